/* attach_marker_lib: a shared library for the library-injection tests. Its
 * constructor appends "loaded pid=P" to the file named by $PW_MARKER_PATH (in
 * the target's environment) and its destructor appends "unloaded pid=P", so a
 * test sees that dlopen ran the constructor inside the target and dlclose
 * unloaded it. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void mark(const char* what) {
  const char* path = getenv("PW_MARKER_PATH");
  if (path == NULL) return;
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  char line[64];
  int n = snprintf(line, sizeof(line), "%s pid=%d\n", what, getpid());
  if (n > 0) (void)write(fd, line, (size_t)n);
  close(fd);
}

__attribute__((constructor)) static void on_load(void) { mark("loaded"); }
__attribute__((destructor)) static void on_unload(void) { mark("unloaded"); }

int pw_marker_answer(void) { return 42; }
