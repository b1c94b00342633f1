/* pw_target: a small target program for procwarp's integration tests.
 *
 *   pw_target isatty          prints "0 1 2" flags: which stdio fds are ttys
 *   pw_target winch           prints "ready", then "ROWSxCOLS" on each SIGWINCH
 *   pw_target creds           prints "uid gid groups..." of the process
 *   pw_target exit N          exits with N
 *   pw_target kill SIG        kills itself with SIG
 *   pw_target cat             copies stdin to stdout until EOF
 *   pw_target interleave N    writes N numbered lines alternating stdout/stderr
 *   pw_target flood BYTES     writes BYTES bytes of 'x' to stdout
 *   pw_target pause           prints "ready" and waits for a signal
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static volatile sig_atomic_t winch_seen;

static void on_winch(int sig) {
  (void)sig;
  winch_seen = 1;
}

static int do_winch(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_winch;
  sigaction(SIGWINCH, &sa, NULL);
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGWINCH);
  sigprocmask(SIG_BLOCK, &block, &old);
  printf("ready\n");
  fflush(stdout);
  for (;;) {
    while (!winch_seen) sigsuspend(&old);
    winch_seen = 0;
    struct winsize ws;
    if (ioctl(0, TIOCGWINSZ, &ws) != 0) return 2;
    printf("%ux%u\n", ws.ws_row, ws.ws_col);
    fflush(stdout);
  }
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: pw_target MODE [ARG]\n");
    return 64;
  }
  const char* mode = argv[1];
  long arg = argc > 2 ? strtol(argv[2], NULL, 10) : 0;
  if (strcmp(mode, "isatty") == 0) {
    printf("%d %d %d\n", isatty(0), isatty(1), isatty(2));
    return 0;
  }
  if (strcmp(mode, "winch") == 0) return do_winch();
  if (strcmp(mode, "creds") == 0) {
    gid_t groups[256];
    int n = getgroups(256, groups);
    printf("%u %u", getuid(), getgid());
    for (int i = 0; i < n; ++i) printf(" %u", groups[i]);
    printf("\n");
    return 0;
  }
  if (strcmp(mode, "exit") == 0) return (int)arg;
  if (strcmp(mode, "kill") == 0) {
    signal((int)arg, SIG_DFL);
    kill(getpid(), (int)arg);
    return 99;
  }
  if (strcmp(mode, "cat") == 0) {
    char buf[4096];
    ssize_t n;
    while ((n = read(0, buf, sizeof(buf))) > 0) {
      if (write(1, buf, n) != n) return 1;
    }
    return 0;
  }
  if (strcmp(mode, "interleave") == 0) {
    for (long i = 0; i < arg; ++i) {
      char line[64];
      int len = snprintf(line, sizeof(line), "%ld\n", i);
      if (write(i % 2 ? 2 : 1, line, len) != len) return 1;
    }
    return 0;
  }
  if (strcmp(mode, "flood") == 0) {
    static char chunk[65536];
    memset(chunk, 'x', sizeof(chunk));
    long left = arg;
    while (left > 0) {
      long n = left < (long)sizeof(chunk) ? left : (long)sizeof(chunk);
      if (write(1, chunk, n) != n) return 1;
      left -= n;
    }
    return 0;
  }
  if (strcmp(mode, "pause") == 0) {
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
  }
  fprintf(stderr, "pw_target: unknown mode %s\n", mode);
  return 64;
}
