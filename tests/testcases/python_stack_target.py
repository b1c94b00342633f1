# A Python program whose stacks and locals tests/integration/python_stack_test
# checks exactly, under every CPython 3.8-3.13 on the machine. Written for all
# of them (no syntax newer than 3.8). Lines the test looks for carry a
# "# LINE:<name>" marker, so the test never hard-codes line numbers.
#
#   python_stack_target.py nested    main thread in outer -> middle -> inner,
#                                     blocked reading stdin
#   python_stack_target.py threads   two named threads blocked in worker_a and
#                                     worker_b, main blocked reading stdin
#   python_stack_target.py names     threads named every way threading names
#                                     them, each blocked in its worker_*; main
#                                     renamed, prints the default name after
#                                     ready
#   python_stack_target.py busy      main thread spinning in spin(); another
#                                     thread answers each stdin line with "pong"
#   python_stack_target.py deep N    main thread N frames deep in recurse(),
#                                     each frame with locals, blocked on stdin
#   python_stack_target.py churn     main thread calling and returning all the
#                                     time (frame chains change constantly)
# Each prints "ready pid=PID" once in place.
import os
import sys
import threading
import _thread


def ready():
    sys.stdout.write("ready pid=%d\n" % os.getpid())
    sys.stdout.flush()


def inner(a, b, *rest, **kw):
    x = 42
    neg = -7
    big = 2 ** 100
    y = -1.5
    s = "h\u00e9llo"
    by = b"\x00ab"
    flag = True
    nothing = None
    lst = [1, 2, 3]
    d = {"k": 1}
    st = {1, 2}
    ready()
    sys.stdin.readline()  # LINE:inner
    later = 1
    return later


def middle(n):
    t = (n, n)
    return inner(n, "two", 3, key="v")  # LINE:middle


def outer():
    return middle(1)  # LINE:outer


def worker_a(event):
    event.wait()  # LINE:worker_a


def worker_b(event):
    event.wait()  # LINE:worker_b


def threads():
    event = threading.Event()
    a = threading.Thread(target=worker_a, args=(event,), name="worker-a", daemon=True)
    b = threading.Thread(target=worker_b, args=(event,), name="worker-b", daemon=True)
    a.start()
    b.start()
    ready()
    sys.stdin.readline()  # LINE:threads


def worker_c(event):
    event.wait()  # LINE:worker_c


def worker_raw(event):
    event.wait()  # LINE:worker_raw


class Worker(threading.Thread):
    def __init__(self, event):
        self.own_attribute = "set before Thread.__init__"  # another key order
        super().__init__(name="worker-sub", daemon=True)
        self.event = event

    def run(self):
        worker_sub(self.event)


def worker_sub(event):
    event.wait()  # LINE:worker_sub


def names():
    event = threading.Event()
    started = []
    given = threading.Thread(target=worker_a, args=(event,), name="worker-7", daemon=True)
    default = threading.Thread(target=worker_b, args=(event,), daemon=True)
    renamed = threading.Thread(target=worker_c, args=(event,), name="before", daemon=True)
    for t in (given, default, renamed, Worker(event)):
        t.start()
        started.append(t)
    renamed.name = "renamed-\u00e9"
    threading.main_thread().name = "main-renamed"
    vars(renamed)["unshared_attribute"] = 1  # its own dict, not the shared keys
    _thread.start_new_thread(worker_raw, (event,))  # no Thread: no name
    ready()
    sys.stdout.write("default-name=%s\n" % default.name)
    sys.stdout.flush()
    sys.stdin.readline()  # LINE:names


def answer():
    for _ in sys.stdin:
        sys.stdout.write("pong\n")
        sys.stdout.flush()


def spin():
    i = 0
    while True:
        i += 1  # LINE:spin


def busy():
    threading.Thread(target=answer, daemon=True).start()
    ready()
    spin()  # LINE:busy


def recurse(depth, label):
    count = depth * 2
    text = "frame"
    if depth > 1:
        return recurse(depth - 1, label)  # LINE:recurse
    ready()
    sys.stdin.readline()  # LINE:bottom


def leaf(v):
    return v + 1


def churn():
    threading.Thread(target=answer, daemon=True).start()
    ready()
    while True:
        leaf(1)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "nested":
        outer()  # LINE:module
    elif mode == "threads":
        threads()
    elif mode == "names":
        names()
    elif mode == "busy":
        busy()
    elif mode == "deep":
        recurse(int(sys.argv[2]), "deep")
    elif mode == "churn":
        churn()
