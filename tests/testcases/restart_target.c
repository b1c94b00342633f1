/* A managed process for the daemon restart tests: its output and its exit
 * are driven through FIFOs the test holds, not through the daemon, so they
 * can happen while no daemon runs.
 *
 *   restart_target chatty CONTROL ACK   for each line "N" on CONTROL, writes N
 *                                       numbered lines to stdout ("seq K",
 *                                       K counting from 0 over the whole
 *                                       run), then one byte to ACK; exits 0
 *                                       at EOF on CONTROL.
 *   restart_target exit_on CONTROL CODE exits with CODE once CONTROL has a
 *                                       byte (or EOF).
 *   restart_target idle                 pause()s until a signal ends it.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int do_chatty(const char* control_path, const char* ack_path) {
  FILE* control = fopen(control_path, "r");
  int ack = open(ack_path, O_WRONLY);
  if (control == NULL || ack < 0) return 100;
  long next = 0;
  char line[64];
  while (fgets(line, sizeof(line), control) != NULL) {
    long n = strtol(line, NULL, 10);
    for (long i = 0; i < n; ++i) printf("seq %ld\n", next++);
    fflush(stdout);
    if (write(ack, "k", 1) != 1) return 101;
  }
  return 0;
}

static int do_exit_on(const char* control_path, int code) {
  int control = open(control_path, O_RDONLY);
  if (control < 0) return 100;
  char byte;
  (void)!read(control, &byte, 1);
  return code;
}

int main(int argc, char** argv) {
  if (argc >= 4 && strcmp(argv[1], "chatty") == 0) return do_chatty(argv[2], argv[3]);
  if (argc >= 4 && strcmp(argv[1], "exit_on") == 0) {
    return do_exit_on(argv[2], atoi(argv[3]));
  }
  if (argc >= 2 && strcmp(argv[1], "idle") == 0) {
    for (;;) pause();
  }
  fprintf(stderr, "usage: restart_target chatty CONTROL ACK | exit_on CONTROL CODE | idle\n");
  return 2;
}
