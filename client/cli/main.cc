// procwarp: the command-line client of procwarpd. Parses the command line
// with CLI11 and hands each subcommand to commands.cc; every error is printed
// as "procwarp: <message>" with exit code 1.
#include <CLI/CLI.hpp>

#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/cli/attach_commands.h"
#include "client/cli/commands.h"
#include "client/cli/exec_commands.h"
#include "client/cli/python_commands.h"
#include "client/cli/output.h"
#include "client/cli/python_stack_commands.h"
#include "client/cli/thread_commands.h"

namespace procwarp::cli {
namespace {

// Everything the command line can say, filled in by CLI11.
struct CommandLine {
  GlobalOptions global;
  RunOptions run;
  bool ps_all = false;
  std::string id;
  std::vector<std::string> ids;
  bool attach_no_stdin = false;
  std::string signal = "TERM";
  bool rm_force = false;
  ThreadCreateOptions thread_create;
  bool thread_ls_all = false;
  std::string syscall;
  std::vector<std::string> syscall_args;
  ThreadExecOptions thread_exec;
  // call / inject / uninject / doctor
  std::string pid;
  std::optional<std::string> doctor_pid;
  std::string function;
  std::vector<std::string> call_args;
  std::string library;
  std::string handle;
  ThreadAttachOptions thread_attach;
  PyStackOptions py_stack;
  int target_pid = 0;  // fds / steal-fd
  int fd = -1;
  std::vector<std::string> command;
  PyExecOptions py_exec;  // py exec
};

void AddRun(CLI::App& app, CommandLine& line) {
  CLI::App* run = app.add_subcommand(
      "run", "Start a process; by default attached to this terminal");
  run->add_flag("-d,--detach", line.run.detach,
                "Start in the background and print the process id");
  run->add_flag("-t,--tty", line.run.tty, "Give the process a pseudo terminal");
  run->add_option("-e,--env", line.run.env,
                  "Set NAME=VALUE (or pass NAME from this environment) in the "
                  "process's environment; repeatable")
      ->allow_extra_args(false);
  run->add_flag("--inherit-env", line.run.inherit_env,
                "Start from this shell's environment instead of an empty one");
  run->add_option("--cwd", line.run.cwd,
                  "Working directory (default: the current one)");
  run->add_option("--name", line.run.name, "A label shown with the process");
  run->add_option("command", line.run.argv, "The command and its arguments")
      ->required();
  // Everything from the command on belongs to it, options included, with or
  // without a "--" before it.
  run->positionals_at_end();
}

void AddIdCommands(CLI::App& app, CommandLine& line) {
  CLI::App* attach = app.add_subcommand(
      "attach", "Connect this terminal to a process's stdio until it exits");
  attach->add_option("id", line.id, "Process id or unique prefix")->required();
  attach->add_flag("--no-stdin", line.attach_no_stdin,
                   "Do not send this terminal's input to the process");

  CLI::App* kill = app.add_subcommand("kill", "Send a signal to a process");
  kill->add_option("-s,--signal", line.signal,
                   "Signal number or name, e.g. 9, KILL, SIGKILL (default TERM)");
  kill->add_option("id", line.id, "Process id or unique prefix")->required();

  CLI::App* wait = app.add_subcommand(
      "wait", "Wait for a process to exit and exit with its exit code");
  wait->add_option("id", line.id, "Process id or unique prefix")->required();

  CLI::App* rm = app.add_subcommand("rm", "Forget exited processes");
  rm->add_flag("-f,--force", line.rm_force, "Kill running processes first");
  rm->add_option("ids", line.ids, "Process ids or unique prefixes")
      ->required();
}

void AddOtherCommands(CLI::App& app, CommandLine& line) {
  app.add_subcommand("status", "Show the daemon's version and state");
  CLI::App* ps = app.add_subcommand("ps", "List processes");
  ps->add_flag("-a,--all", line.ps_all,
               "Every identity's processes (admins only)");
  app.add_subcommand("events", "Print process events as they happen");
}

void AddThreadCommands(CLI::App& app, CommandLine& line) {
  CLI::App* thread = app.add_subcommand(
      "thread", "Create or attach and drive remote threads (syscalls in an agent or an "
      "attached process)");
  thread->require_subcommand(1);

  CLI::App* create = thread->add_subcommand(
      "create", "Start a thread and print its id (kept until `thread kill`)");
  create->add_flag("--persistent", line.thread_create.persistent,
                   "Keep the thread after this command exits (always the "
                   "case for threads made by the CLI)");
  create->add_flag("--userns", line.thread_create.user_namespace,
                   "In a new user namespace (uid 0 inside is you)");
  create->add_flag("--mountns", line.thread_create.mount_namespace,
                   "In a new mount namespace");
  create->add_flag("--pidns", line.thread_create.pid_namespace,
                   "In a new pid namespace");
  create->add_flag("--netns", line.thread_create.net_namespace,
                   "In a new network namespace");
  create->add_flag("--utsns", line.thread_create.uts_namespace,
                   "In a new UTS namespace");
  create->add_flag("--ipcns", line.thread_create.ipc_namespace,
                   "In a new IPC namespace");
  create->add_option("--name", line.thread_create.name,
                     "A label shown with the thread");

  CLI::App* ls = thread->add_subcommand("ls", "List threads");
  ls->add_flag("-a,--all", line.thread_ls_all,
               "Every identity's threads (admins only)");

  CLI::App* syscall = thread->add_subcommand(
      "syscall", "Run one syscall in a thread and print its result");
  syscall->add_option("id", line.id, "Thread id or unique prefix")->required();
  syscall->add_option("syscall", line.syscall,
                      "Name as strace prints it (getpid, close...) or number")
      ->required();
  syscall->add_option("args", line.syscall_args,
                      "Integer arguments, decimal or 0x hex (at most 6)");
  // Arguments such as -100 (AT_FDCWD) are values, not options.
  syscall->positionals_at_end();

  CLI::App* exec = thread->add_subcommand(
      "exec",
      "Run a program in a thread (execve), making it a managed process; "
      "prints the process id");
  exec->add_option("id", line.id,
                   "Thread id or unique prefix (options go before it: "
                   "everything after it belongs to the program)")
      ->required();
  exec->add_option("-e,--env", line.thread_exec.env,
                   "Set NAME=VALUE (or pass NAME from this environment) in "
                   "the program's environment; repeatable")
      ->allow_extra_args(false);
  exec->add_option("--name", line.thread_exec.name,
                   "A label shown with the process");
  exec->add_option("command", line.thread_exec.argv,
                   "The program (absolute path, no PATH search) and its "
                   "arguments")
      ->required();
  exec->positionals_at_end();

  CLI::App* kill = thread->add_subcommand(
      "kill", "End a thread (an attached one is detached, never killed)");
  kill->add_option("id", line.id, "Thread id or unique prefix")->required();

  CLI::App* attach = thread->add_subcommand(
      "attach",
      "Attach to a thread of an existing process (ptrace) and print a thread "
      "id for the other `thread` commands (kept until `thread kill`)");
  attach->add_option("pid", line.thread_attach.pid, "Process id")->required();
  attach->add_option("--tid", line.thread_attach.tid,
                     "One of its threads (default: the main thread)");
  attach->add_flag("--persistent", line.thread_attach.persistent,
                   "Keep the attachment after this command exits (always the "
                   "case for attachments made by the CLI)");
  attach->add_option("--name", line.thread_attach.name,
                     "A label shown with the thread");
}

void AddAttachCommands(CLI::App& app, CommandLine& line) {
  CLI::App* fds = app.add_subcommand(
      "fds", "List a process's fds: number, type, flags, offset, path or "
             "socket (attaches for the listing)");
  fds->add_option("pid", line.target_pid, "Process id")->required();

  CLI::App* steal = app.add_subcommand(
      "steal-fd",
      "Copy a process's fd out of it (attaches for the copy): run COMMAND "
      "with it as stdin, or keep it in a new thread and print where");
  steal->add_option("pid", line.target_pid, "Process id")->required();
  steal->add_option("fd", line.fd, "Its fd number")->required();
  steal->add_option("command", line.command,
                    "-- COMMAND [ARGS...] to run with the fd as its stdin");
  steal->positionals_at_end();
}

void AddExecCommands(CLI::App& app, CommandLine& line) {
  CLI::App* call = app.add_subcommand(
      "call",
      "Call a function in a running process (attached for the call only) and "
      "print its return value; exit code 2 if the function crashed");
  call->add_option("pid", line.pid, "Process id")->required();
  call->add_option("function", line.function,
                   "libc.so.6:getpid, getpid (searched in load order), "
                   "main-program:my_func, or an address 0x...")
      ->required();
  call->add_option("args", line.call_args,
                   "Integer/pointer arguments, decimal or 0x hex (at most 6)");
  call->positionals_at_end();

  CLI::App* inject = app.add_subcommand(
      "inject",
      "Load a shared library into a running glibc process (dlopen; its "
      "constructors run) and print a handle for `uninject`");
  inject->add_option("pid", line.pid, "Process id")->required();
  inject->add_option("library", line.library,
                     "The library (opened with your permissions)")
      ->required();

  CLI::App* uninject = app.add_subcommand(
      "uninject", "Unload a library `inject` loaded (dlclose)");
  uninject->add_option("handle", line.handle, "The handle `inject` printed")
      ->required();

  CLI::App* doctor = app.add_subcommand(
      "doctor",
      "Say what call/inject can and cannot do with a process, and why, "
      "without touching it; without PID, check the daemon");
  doctor->add_option("pid", line.doctor_pid, "Process id");
}

// `procwarp py ...`: Python programs (docs/python.md).
void AddPythonCommands(CLI::App& app, CommandLine& line) {
  CLI::App* py = app.add_subcommand(
      "py", "Python programs: run code inside them, read their stacks");
  py->require_subcommand(1);
  CLI::App* exec = py->add_subcommand(
      "exec",
      "Run Python code inside a live CPython 3.8-3.13 process at a safe point "
      "and print what it printed (docs/python.md)");
  exec->add_option("pid", line.py_exec.pid, "Process id")->required();
  CLI::Option* code = exec->add_option("-c", line.py_exec.code, "The code");
  CLI::Option* file =
      exec->add_option("-f", line.py_exec.file, "A file with the code (- for stdin)");
  code->excludes(file);
  exec->add_flag("--eval", line.py_exec.eval,
                 "The code is one expression: print the repr of its value");
  exec->add_option("--timeout", line.py_exec.timeout_seconds,
                   "Seconds to wait for the code to run and finish");
  exec->add_flag("--main-thread", line.py_exec.main_thread,
                 "Run only on the main thread (as signal handlers do)");
  exec->add_flag("--no-wait", line.py_exec.no_wait,
                 "Return once the code is queued; its output is not collected");
  exec->add_flag("--override-opt-out", line.py_exec.override_opt_out,
                 "Admins: run although the target opted out of remote debugging");
  CLI::App* stack = py->add_subcommand(
      "stack",
      "Print every Python thread's stack, read from the process's memory "
      "without running code in it or stopping it");
  stack->add_option("pid", line.py_stack.pid, "Process id")->required();
  stack->add_flag("--locals", line.py_stack.locals,
                  "Show each frame's arguments and local variables");
  stack->add_flag("--consistent", line.py_stack.consistent,
                  "Stop all the process's threads for the read (then let them go)");
  stack->add_flag("--native", line.py_stack.native, "Also native (C) frames");
  stack->add_flag("--repr", line.py_stack.repr,
                  "Full reprs of every local, through remote exec");
}

absl::StatusOr<int> DispatchPy(const CLI::App& py, const CommandLine& line) {
  const std::string name = py.get_subcommands().front()->get_name();
  if (name == "exec") return RunPyExec(line.global, line.py_exec);
  if (name == "stack") return RunPyStack(line.global, line.py_stack);
  return absl::InternalError("unhandled py subcommand " + name);
}

absl::StatusOr<int> DispatchThread(const CLI::App& thread,
                                   const CommandLine& line) {
  const std::string name = thread.get_subcommands().front()->get_name();
  if (name == "create") return RunThreadCreate(line.global, line.thread_create);
  if (name == "ls") return RunThreadLs(line.global, line.thread_ls_all);
  if (name == "syscall") {
    return RunThreadSyscall(line.global, line.id, line.syscall,
                            line.syscall_args);
  }
  if (name == "exec") return RunThreadExec(line.global, line.id, line.thread_exec);
  if (name == "kill") return RunThreadKill(line.global, line.id);
  if (name == "attach") return RunThreadAttach(line.global, line.thread_attach);
  return absl::InternalError("unhandled thread subcommand " + name);
}

absl::StatusOr<int> Dispatch(const CLI::App& app, const CommandLine& line) {
  const CLI::App* command = app.get_subcommands().front();
  const std::string name = command->get_name();
  if (name == "thread") return DispatchThread(*command, line);
  if (name == "py") return DispatchPy(*command, line);
  if (name == "status") return RunStatus(line.global);
  if (name == "run") return RunRun(line.global, line.run);
  if (name == "ps") return RunPs(line.global, line.ps_all);
  if (name == "attach") {
    return RunAttach(line.global, line.id, line.attach_no_stdin);
  }
  if (name == "kill") return RunKill(line.global, line.id, line.signal);
  if (name == "wait") return RunWait(line.global, line.id);
  if (name == "rm") return RunRm(line.global, line.ids, line.rm_force);
  if (name == "events") return RunEvents(line.global);
  if (name == "call") {
    return RunCall(line.global, line.pid, line.function, line.call_args);
  }
  if (name == "inject") return RunInject(line.global, line.pid, line.library);
  if (name == "uninject") return RunUninject(line.global, line.handle);
  if (name == "doctor") return RunDoctor(line.global, line.doctor_pid);
  if (name == "fds") return RunFds(line.global, line.target_pid);
  if (name == "steal-fd") {
    return RunStealFd(line.global, line.target_pid, line.fd, line.command);
  }
  return absl::InternalError("unhandled subcommand " + name);
}

int Main(int argc, char** argv) {
  // gRPC logs TLS failures to stderr in its own words; the CLI explains
  // them itself (client/cc/tls_diagnosis.h). GRPC_VERBOSITY=ERROR in the
  // environment brings gRPC's lines back.
  setenv("GRPC_VERBOSITY", "NONE", /*overwrite=*/0);
  CLI::App app("procwarp: manage processes through procwarpd", "procwarp");
  CommandLine line;
  app.add_option("--socket", line.global.socket_path,
                 "procwarpd's socket (default: $PROCWARP_SOCKET, else "
                 "/run/procwarp/procwarpd.sock as root, else "
                 "$XDG_RUNTIME_DIR/procwarp/procwarpd.sock)");
  app.add_option("--host", line.global.host,
                 "A remote procwarpd, HOST:PORT, over mutual TLS (with --ca, "
                 "--cert, --key); default $PROCWARP_HOST, else the context's");
  app.add_option("--ca", line.global.ca,
                 "PEM CA that signed the remote daemon's certificate "
                 "(default $PROCWARP_CA)");
  app.add_option("--cert", line.global.cert,
                 "PEM client certificate for --host (default $PROCWARP_CERT)");
  app.add_option("--key", line.global.key,
                 "PEM key of --cert (default $PROCWARP_KEY)");
  app.add_option("--context", line.global.context,
                 "A named context of ~/.config/procwarp/config (default "
                 "$PROCWARP_CONTEXT, else the file's current_context)");
  app.add_flag("--json", line.global.json, "Print results as JSON");
  app.footer(
      "Environment:\n"
      "  PROCWARP_SOCKET      the daemon's socket when --socket is not given\n"
      "  PROCWARP_DAEMON_UID  one more uid trusted to serve the socket; by\n"
      "                       default only a daemon run by root or by you is\n"
      "                       used (see client/cc/client.h)\n"
      "  PROCWARP_HOST, PROCWARP_CA, PROCWARP_CERT, PROCWARP_KEY\n"
      "                       --host, --ca, --cert, --key when not given\n"
      "  PROCWARP_CONTEXT     --context when not given\n"
      "Config: $XDG_CONFIG_HOME/procwarp/config or ~/.config/procwarp/config,\n"
      "  named contexts (client/cli/cli_config.proto; README \"Driving another\n"
      "  host\")");
  app.require_subcommand(1);
  // Global options may also follow the subcommand's name.
  app.fallthrough();
  AddRun(app, line);
  AddIdCommands(app, line);
  AddOtherCommands(app, line);
  AddThreadCommands(app, line);
  AddExecCommands(app, line);
  AddAttachCommands(app, line);
  AddPythonCommands(app, line);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error);
  }
  absl::StatusOr<int> exit_code = Dispatch(app, line);
  if (!exit_code.ok()) {
    // Messages echo the daemon's words and other users' data (ids, paths,
    // names): escaped like all other output.
    std::cerr << "procwarp: " << EscapeForTerminal(exit_code.status().message())
              << std::endl;
    return 1;
  }
  return *exit_code;
}

}  // namespace
}  // namespace procwarp::cli

int main(int argc, char** argv) { return procwarp::cli::Main(argc, argv); }
