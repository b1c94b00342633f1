"""Processes through the Python client: spawn, output, wait, kill, list,
remove and events against a real procwarpd."""

import signal

import pytest

import procwarp
from procwarp.v1 import processes_pb2


def test_spawn_output_and_exit_code(client):
    process = client.spawn(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"])
    assert process.pid > 0
    chunks = [(c.stream, c.data) for c in process.output()]
    stdout = b"".join(d for s, d in chunks if s == processes_pb2.OUTPUT_STREAM_STDOUT)
    stderr = b"".join(d for s, d in chunks if s == processes_pb2.OUTPUT_STREAM_STDERR)
    assert (stdout, stderr) == (b"out\n", b"err\n")
    assert process.info.state == processes_pb2.PROCESS_STATE_EXITED
    assert process.returncode == 3


def test_stdin_environment_and_cwd(client):
    process = client.spawn(
        ["/bin/sh", "-c", 'read line; echo "$line $GREETING $(pwd)"'],
        stdin="pipe", env={"GREETING": "hello", "PATH": "/usr/bin:/bin"},
        cwd="/tmp")
    output = b"".join(c.data for c in process.output(stdin=b"in\n"))
    assert output == b"in hello /tmp\n"
    assert process.returncode == 0


def test_wait_returns_the_exit_status(client):
    process = client.spawn(["/bin/sh", "-c", "exit 7"], stdout="null",
                           stderr="null")
    info = client.wait(process)
    assert info.exit_status.code == 7
    assert procwarp.returncode(info) == 7
    assert process.wait().exit_status.code == 7  # waiting again is fine
    assert process.returncode == 7


def test_kill_and_signal_status(client):
    process = client.spawn(["/bin/sleep", "1000"])
    assert process.refresh().state == processes_pb2.PROCESS_STATE_RUNNING
    assert process.returncode is None
    client.kill(process.id, signal.SIGKILL)
    assert client.wait(process.id).exit_status.signal == signal.SIGKILL
    process.refresh()
    assert process.returncode == -signal.SIGKILL

    second = client.spawn(["/bin/sleep", "1000"])
    second.kill()  # SIGTERM by default
    assert second.wait().exit_status.signal == signal.SIGTERM


def test_list_get_and_remove(client):
    labels = {"test": "list"}
    process = client.spawn(["/bin/true"], labels=labels)
    process.wait()
    listed = {p.id: p for p in client.list()}
    assert process.id in listed
    assert dict(listed[process.id].labels) == labels
    assert list(listed[process.id].argv) == ["/bin/true"]
    assert client.get(process.id).pid == process.pid
    assert client.process(process.id).pid == process.pid

    client.remove(process)
    assert process.id not in {p.id for p in client.list()}
    with pytest.raises(procwarp.NotFound):
        client.get(process.id)


def test_remove_force_kills_a_running_process(client):
    process = client.spawn(["/bin/sleep", "1000"])
    with pytest.raises(procwarp.FailedPrecondition):
        process.remove()
    process.remove(force=True)
    with pytest.raises(procwarp.NotFound):
        process.refresh()


def test_events_see_start_and_exit(client):
    events = client.events()
    process = client.spawn(["/bin/true"])
    seen = []
    for event in events:
        if event.process.id != process.id:
            continue
        seen.append(event.kind)
        if event.kind == processes_pb2.ProcessEvent.KIND_EXITED:
            break
    events.close()
    assert seen == [processes_pb2.ProcessEvent.KIND_STARTED,
                    processes_pb2.ProcessEvent.KIND_EXITED]


def test_spawn_request_for_everything_else(client):
    request = processes_pb2.SpawnRequest(
        argv=["/bin/sh", "-c", "ulimit -n"],
        env=["PATH=/usr/bin:/bin"],
        stdout=processes_pb2.StdioSpec(kind=processes_pb2.STDIO_KIND_PIPE),
        rlimits=[processes_pb2.Rlimit(resource="NOFILE", soft=77, hard=77)])
    process = client.spawn(request)
    assert b"".join(c.data for c in process.output()) == b"77\n"
