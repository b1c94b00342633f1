# A Python program any interpreter (2.7 included) runs: ready line, then a
# long sleep. For the "unsupported version" cases of python_exec_test.
import os
import sys
import time
sys.stdout.write('ready pid=%d\n' % os.getpid())
sys.stdout.flush()
time.sleep(3600)
