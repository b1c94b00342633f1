/* deny_process_vm: runs a command with process_vm_readv/writev failing with
 * EPERM, as a container runtime's default seccomp profile does (Docker's,
 * without CAP_SYS_PTRACE). Tests run procwarpd under it to push the daemon,
 * and the agents it starts, onto their in-band memory paths. pread64 and
 * pwrite64 at offsets of 4 GiB and more fail too: the daemon's own path is
 * pread/pwrite on /proc/PID/mem at the thread's addresses (mmap puts them far
 * above 4 GiB), which such a container refuses by other means than seccomp
 * (no CAP_SYS_PTRACE); file reads (the dynamic loader's) stay below.
 *
 *   deny_process_vm PROGRAM [ARG...]
 */
#include <errno.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s PROGRAM [ARG...]\n", argv[0]);
    return 2;
  }
  scmp_filter_ctx filter = seccomp_init(SCMP_ACT_ALLOW);
  if (filter == NULL) {
    fprintf(stderr, "deny_process_vm: seccomp_init failed\n");
    return 1;
  }
  /* No no_new_privs: the daemon must still be able to hand children other
   * credentials, and root may load a filter without it. */
  int rc = seccomp_attr_set(filter, SCMP_FLTATR_CTL_NNP, 0);
  if (rc == 0) {
    rc = seccomp_rule_add(filter, SCMP_ACT_ERRNO(EPERM),
                          SCMP_SYS(process_vm_readv), 0);
  }
  if (rc == 0) {
    rc = seccomp_rule_add(filter, SCMP_ACT_ERRNO(EPERM),
                          SCMP_SYS(process_vm_writev), 0);
  }
  if (rc == 0) {
    rc = seccomp_rule_add(filter, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(pread64), 1,
                          SCMP_A3(SCMP_CMP_GE, 1ULL << 32));
  }
  if (rc == 0) {
    rc = seccomp_rule_add(filter, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(pwrite64), 1,
                          SCMP_A3(SCMP_CMP_GE, 1ULL << 32));
  }
  if (rc == 0) rc = seccomp_load(filter);
  seccomp_release(filter);
  if (rc != 0) {
    fprintf(stderr, "deny_process_vm: loading the filter failed: %s\n",
            strerror(-rc));
    return 1;
  }
  execv(argv[1], argv + 1);
  fprintf(stderr, "deny_process_vm: exec %s: %s\n", argv[1], strerror(errno));
  return 127;
}
