"""Remote threads through the Python client: agent threads and attached
processes, syscalls one by one and pipelined."""

import errno
import os
import subprocess

import pytest

import procwarp
from procwarp.v1 import threads_pb2


def test_getpid_of_a_thread_is_its_pid(client):
    with client.create_thread() as thread:
        assert thread.info.kind == threads_pb2.THREAD_KIND_AGENT
        result = thread.syscall("getpid")
        assert (result.value, result.error) == (thread.pid, 0)
        # By number too: 39 is getpid on x86-64.
        assert thread.syscall(39).value == thread.pid
        assert thread.syscall("getuid").value == os.getuid()


def test_a_failed_syscall_is_a_result(client):
    with client.create_thread() as thread:
        result = thread.syscall("close", 9999)
        assert (result.value, result.error, result.error_name) == (
            -1, errno.EBADF, "EBADF")
        with pytest.raises(OSError) as raised:
            thread.syscall("close", 9999, check=True)
        assert raised.value.errno == errno.EBADF


def test_execute_pipelines_many_syscalls_in_order(client):
    with client.create_thread() as thread:
        calls = [("getpid",), ("close", 9999), ("getppid",)] * 100
        results = list(thread.execute(iter(calls), batch_size=16))
        assert len(results) == len(calls)
        for result in results[0::3]:
            assert result.value == thread.pid
        for result in results[1::3]:
            assert result.error == errno.EBADF


def test_thread_listed_and_gone_after_exit(client):
    thread = client.create_thread(labels={"test": "threads"})
    assert thread.id in {t.id for t in client.threads()}
    assert client.thread(thread.id).pid == thread.pid
    info = thread.exit()
    assert info.state == threads_pb2.THREAD_STATE_EXITED
    with pytest.raises(procwarp.NotFound):
        client.thread(thread.id)
    with pytest.raises(procwarp.NotFound):
        thread.syscall("getpid")


def test_attached_thread_runs_syscalls_in_the_process(client):
    # A process procwarp did not spawn; leaving the block detaches from it.
    target = subprocess.Popen(["/bin/sleep", "1000"])
    try:
        with client.attach_thread(target.pid) as thread:
            assert thread.info.kind == threads_pb2.THREAD_KIND_ATTACHED
            assert thread.syscall("getpid").value == target.pid
        assert target.poll() is None  # detached, never killed
    finally:
        target.kill()
        target.wait()


def test_unknown_syscall_name(client):
    with client.create_thread() as thread:
        with pytest.raises(procwarp.InvalidArgument):
            thread.syscall("no_such_syscall")
        with pytest.raises(procwarp.InvalidArgument):
            list(thread.execute([("getpid",)] * 10 + [("no_such_syscall",)],
                                batch_size=4))
        assert thread.syscall("getpid").value == thread.pid
