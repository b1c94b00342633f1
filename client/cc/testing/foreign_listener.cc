// Test helper: another user's fake "procwarpd". Listens on a unix socket as
// the given uid and reports how many bytes the first client sent, so tests can
// show that clients refuse such a socket before sending anything.
//
// Usage (as root): foreign_listener SOCKET_PATH UID
// Becomes UID (gid UID, no supplementary groups) before it binds and listens,
// so SO_PEERCRED and the socket file both say UID; the socket's directory
// must be writable by UID. Prints "listening" once clients may connect, then
// accepts one connection, does one read of it and prints "received N" (0: the
// client closed without sending anything) and exits 0. Exits 1 on errors.
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace {

int Fail(const char* call) {
  fprintf(stderr, "foreign_listener: %s: %s\n", call, strerror(errno));
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: foreign_listener SOCKET_PATH UID\n");
    return 1;
  }
  const char* path = argv[1];
  const uid_t uid = static_cast<uid_t>(strtoul(argv[2], nullptr, 10));
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof(address.sun_path)) {
    fprintf(stderr, "foreign_listener: socket path too long\n");
    return 1;
  }
  strcpy(address.sun_path, path);

  if (setgroups(0, nullptr) != 0) return Fail("setgroups(0)");
  if (setresgid(uid, uid, uid) != 0) return Fail("setresgid");
  if (setresuid(uid, uid, uid) != 0) return Fail("setresuid");

  const int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) return Fail("socket");
  if (bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)) !=
      0) {
    return Fail("bind");
  }
  // Anyone may connect, as to a real daemon's socket with mode 0666.
  if (chmod(path, 0777) != 0) return Fail("chmod");
  if (listen(listener, 16) != 0) return Fail("listen");
  printf("listening\n");
  fflush(stdout);

  const int connection = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  if (connection < 0) return Fail("accept4");
  char buffer[4096];
  ssize_t n;
  do {
    n = read(connection, buffer, sizeof(buffer));
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Fail("read");
  printf("received %zd\n", n);
  fflush(stdout);
  close(connection);
  close(listener);
  unlink(path);
  return 0;
}
