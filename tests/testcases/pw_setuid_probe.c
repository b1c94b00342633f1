/* pw_setuid_probe: a stand-in for a setuid-root program, for the tests of
 * what the daemon does to a thread that execve()s one behind its back
 * (tests/integration/thread_security_test.cc installs a copy owned by root
 * with mode 4755, and a plain copy for the control).
 *
 *   pw_setuid_probe FILE READY_FD ADDRESS [become-root]
 *
 * Opens FILE (a root-only secret, when setuid), copies its start into a page
 * it maps at ADDRESS (hex; where the thread had memory the caller holds a
 * pointer to, so a daemon that still read "the thread's memory" there would
 * hand out the secret), with become-root also sets all three uids to 0 (as
 * su and sudo do), then writes "fd=N\n" (N: FILE's fd, -1 if it could not be
 * opened) to READY_FD and waits to be killed.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s FILE READY_FD ADDRESS [become-root]\n", argv[0]);
    return 2;
  }
  int fd = open(argv[1], O_RDONLY);
  int ready = atoi(argv[2]);
  unsigned long address = strtoul(argv[3], NULL, 16);
  char *page = mmap((void *)address, 4096, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (page != MAP_FAILED && fd >= 0 && pread(fd, page, 4095, 0) < 0) {
    page[0] = '\0';
  }
  if (argc > 4 && strcmp(argv[4], "become-root") == 0 &&
      setresuid(0, 0, 0) != 0) {
    fd = -2;
  }
  dprintf(ready, "fd=%d\n", fd);
  close(ready);
  for (;;) pause();
}
