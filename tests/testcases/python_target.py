# A Python program for tests/integration/python_exec_test: prints one ready
# line, then does what its mode says until a remote exec sets the global
# `stop`, and then prints what it saw ("done ...") with its own sys.stdout —
# which proves that stdout, its globals and its own work survived the execs.
#
#   python_target.py busy|sleep|pipe|threads|threads-sleep|veto|exit|stuck|gil-held
#
# stuck: the main thread runs one C call that never returns (sum() of an
# endless iterator: never at a bytecode boundary, never in a blocking call);
# prints "stuck" first. Queued calls never run there.
# gil-held: one long computation the interpreter does without yielding the
# GIL (a big power: a single call into the runtime), then busy as in busy.
# threads-sleep: the main thread computes as in busy while three workers
# sleep in a loop (on PyPy the code runs on a worker then).
import sys
import threading
import time

mode = sys.argv[1]
stop = False
message = ''


def say(*parts):
    print(*parts)
    sys.stdout.flush()


if mode == 'veto':
    def hook(event, args):
        if event == 'procwarp.remote_exec':
            raise RuntimeError('remote exec is not welcome here')
    sys.addaudithook(hook)

say('ready', 'pid=%d' % __import__('os').getpid(), 'mode=' + mode)

if mode == 'threads-sleep':
    naps = [0, 0, 0]

    def nap(k):
        while not stop:
            time.sleep(0.05)
            naps[k] += 1
    sleepers = [threading.Thread(target=nap, args=(k,)) for k in range(3)]
    for s in sleepers:
        s.start()

if mode == 'gil-held':
    held = 3 ** 20000000

if mode in ('busy', 'exit', 'threads-sleep', 'gil-held'):
    i = total = 0
    while not stop:
        i += 1
        total += i
    if mode == 'threads-sleep':
        for s in sleepers:
            s.join()
    say('done', 'sum-ok=%s' % (total == i * (i + 1) // 2), 'message=' + message)
elif mode in ('sleep', 'veto'):
    while not stop:
        time.sleep(0.2)
    say('done', 'message=' + message)
elif mode == 'stuck':
    import itertools
    say('stuck')
    sum(itertools.repeat(1))
elif mode == 'pipe':
    line = sys.stdin.readline()
    say('done', 'read=' + line.strip(), 'message=' + message)
elif mode == 'threads':
    counts = [0, 0, 0]

    def work(k):
        while not stop:
            counts[k] += 1
    workers = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for w in workers:
        w.start()
    j = 0
    while not stop:
        j += 1
    for w in workers:
        w.join()
    say('done', 'workers-ran=%s' % all(c > 0 for c in counts), 'message=' + message)
