"""Plans run across real device agents on loopback (an emulated fleet: one `edgevit serve` process
per device behind a link emulator): deploy, answers equal to running the plan in one process,
and real failures: an agent killed with SIGKILL mid-stream and restarted, an agent stopped with
SIGSTOP (hung), a slow link (the hedge wins), a wrong token, addresses nobody answers at."""

from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest

pytest.importorskip("grpc")

from tolerances import SAME_ARTIFACTS

from edgevit.cluster.deploy import read_deployment  # noqa: E402
from edgevit.cluster.emulate import LinkSpec  # noqa: E402
from edgevit.cluster.fleet import Fleet, FleetDevice  # noqa: E402
from edgevit.cluster.local import run_in_process  # noqa: E402
from edgevit.cluster.policy import Policy  # noqa: E402
from edgevit.cluster.session import connect  # noqa: E402
from edgevit.devices import load_devices  # noqa: E402
from edgevit.errors import AgentError, InvalidArgumentError  # noqa: E402

pytestmark = pytest.mark.slow  # real agent processes, over a minute in all
DEVICES = ("dev0", "dev1", "dev2")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet")
    with Fleet(root, [FleetDevice(name, memory_mb=64, link=LinkSpec(latency_ms=1.0)) for name in DEVICES]) as running:
        running.devices_file = running.write_devices(root / "devices.toml")
        yield running


def _deploy(plan, fleet, replicas=0):
    from edgevit.cluster.deploy import deploy_plan

    return deploy_plan(plan, load_devices(fleet.devices_file), replicas=replicas)


def test_classwise_on_agents_equals_the_plan_in_one_process(classwise3, fleet, images, capsys):
    from edgevit.cli import main

    assert main(["deploy", str(classwise3), "--devices", str(fleet.devices_file), "--replicas", "1"]) == 0
    assert "wrote" in capsys.readouterr().out
    deployment = read_deployment(classwise3)
    assert all(len(p.devices) == 2 and p.devices[0] != p.devices[1] for p in deployment.pieces)
    expected = run_in_process(classwise3, images, backend="onnxruntime")
    with connect(classwise3, fleet.devices_file) as session:
        result = session.run(images)
        stats = session.stats()
    np.testing.assert_array_equal(result.logits, expected.logits)
    assert result.degraded == 0 and stats["policy"]["failed_over"] == 0
    piece = result.answers[0].pieces["sub0"]
    assert piece["device"] == "dev0" and piece["compute_ms"] > 0 and piece["round_trip_ms"] > piece["compute_ms"]


def test_pipeline_on_agents_equals_the_plan_in_one_process(pipeline2, fleet, images, tmp_path, capsys):
    from PIL import Image

    from edgevit.cli import main

    _deploy(pipeline2, fleet)
    expected = run_in_process(pipeline2, images, backend="onnxruntime")
    with connect(pipeline2, fleet.devices_file) as session:
        answers = list(session.stream(images))  # frames in flight at once, answers in order
    np.testing.assert_array_equal(np.stack([a.logits for a in answers]), expected.logits)
    assert all(list(a.pieces) == ["stage0", "stage1"] for a in answers)
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"digit{i}.png")
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(paths[-1])
    assert main(["run", str(pipeline2), *map(str, paths), "--devices", str(fleet.devices_file), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["image"] for line in lines] == list(map(str, paths)) and not lines[0]["degraded"]


def test_a_killed_agent_degrades_answers_then_comes_back(classwise3, fleet, images):
    _deploy(classwise3, fleet)  # no standbys: losing a device loses its sub-model
    policy = Policy(deadline_ms=2000, hedge=False, probe_initial_ms=50, probe_max_ms=200)
    with connect(classwise3, fleet.devices_file, policy=policy) as session:
        answers = []
        for index, answer in enumerate(session.stream(list(images) * 3)):
            answers.append(answer)
            if index == 10:
                fleet.kill("dev1")  # SIGKILL: no drain
            if index == 40:
                fleet.restart("dev1")
                for _ in range(100):  # the breaker's probe takes it back, no reconnect by hand
                    if not session.stats()["down"]:
                        break
                    time.sleep(0.05)
        stats = session.stats()
        in_flight = session.max_in_flight  # frames already sent when the kill and the restart happen
    assert all(a.ok for a in answers), [a.error for a in answers if not a.ok]
    degraded = [i for i, a in enumerate(answers) if a.degraded]
    assert degraded and min(degraded) > 10 and max(degraded) <= 40 + in_flight, degraded
    assert all(answers[i].missing == ("sub1",) for i in degraded)
    assert not any(a.degraded for a in answers[45:]), "back in service after the restart"
    assert stats["policy"]["marked_down"] >= 1 and stats["policy"]["back_up"] >= 1 and stats["down"] == []
    assert all(a.latency_ms < policy.deadline_ms for a in answers)


def test_a_hung_agent_costs_no_more_than_the_deadline(classwise3, fleet, images):
    _deploy(classwise3, fleet)
    policy = Policy(deadline_ms=300, hedge=False, breaker_failures=2, probe_initial_ms=50)
    with connect(classwise3, fleet.devices_file, policy=policy) as session:
        session.run(images[:4])
        fleet.processes["dev2"].send_signal(signal.SIGSTOP)  # hung: the kernel accepts, nobody answers
        try:
            answers = list(session.stream(images[:8]))
        finally:
            fleet.processes["dev2"].send_signal(signal.SIGCONT)
        first = session.max_in_flight  # sent together before any timeout: each waits its deadline
    assert all(a.ok and a.degraded and a.missing == ("sub2",) for a in answers), answers
    assert all(a.latency_ms < 300 + 100 for a in answers)
    assert max(a.latency_ms for a in answers[first:]) < 150, "marked down after 2 timeouts: no more waiting"


def test_a_slow_device_is_hedged_and_the_standby_wins(classwise3, fleet, images):
    deployment = _deploy(classwise3, fleet, replicas=1)
    primary, standby = deployment.devices_of("sub0")
    policy = Policy(deadline_ms=2000, hedge_min_samples=10)
    with connect(classwise3, fleet.devices_file, policy=policy) as session:
        session.run(np.concatenate([images] * 2)[:20])  # learn every piece's round trip
        fleet.links[primary].set_link(LinkSpec(latency_ms=150.0))
        try:
            answers = list(session.stream(images[:6]))
        finally:
            fleet.links[primary].set_link(LinkSpec(latency_ms=1.0))
        stats = session.stats()
    assert all(a.pieces["sub0"]["device"] == standby and a.pieces["sub0"]["hedged"] for a in answers), \
        [a.pieces["sub0"] for a in answers]
    assert all(a.latency_ms < 150 for a in answers) and stats["policy"]["hedge_won"] >= 6


def test_a_wrong_token_is_named_at_connect(classwise3, tmp_path, images):
    token = tmp_path / "token"
    token.write_text("the-right-token-0123456789")
    token.chmod(0o600)
    with Fleet(tmp_path / "fleet", [FleetDevice(n, memory_mb=64) for n in DEVICES],
               agent_args=("--token-file", str(token), "--admin-token-file", str(token))) as guarded:
        devices = guarded.write_devices(tmp_path / "devices.toml")
        text = devices.read_text()
        devices.write_text(text.replace('address = ', 'token_file = "token"\naddress = '))
        _deploy(classwise3, type("F", (), {"devices_file": devices})())
        wrong = tmp_path / "wrong"
        wrong.write_text("not-the-token-0123456789")
        devices.write_text(text.replace('address = ', 'token_file = "wrong"\naddress = '))
        with pytest.raises(AgentError) as error:
            connect(classwise3, devices)
        assert error.value.code == "UNAUTHENTICATED" and "dev0" in str(error.value)


def test_addresses_nobody_answers_at_are_named(classwise3, tmp_path):
    from edgevit.agent.client import parse_url  # noqa: F401 - the address syntax the device file uses

    devices = tmp_path / "devices.toml"
    devices.write_text("".join(f'[[device]]\nname = "{n}"\nmemory_mb = 64\nspeed = 1.0\nlink_mbps = 100\n'
                               f'link_latency_ms = 1.0\naddress = "127.0.0.1:{port}"\n'
                               for n, port in zip(DEVICES, (1, 2, 3))))
    with pytest.raises(AgentError) as error:
        connect(classwise3, devices)
    message = str(error.value)
    assert error.value.code == "UNAVAILABLE" and "no device of the plan answers" in message
    assert all(f"{n} at 127.0.0.1:{p}" in message for n, p in zip(DEVICES, (1, 2, 3)))
    devices.write_text(devices.read_text().replace('address = "127.0.0.1:1"', ""))
    with pytest.raises(InvalidArgumentError, match="device 'dev0' in .* has no address"):
        connect(classwise3, devices)


def test_sixty_four_clients_through_one_session(classwise3, fleet, images):
    import threading

    _deploy(classwise3, fleet)
    expected = run_in_process(classwise3, images[:1], backend="onnxruntime").logits[0]
    errors, answered = [], []
    with connect(classwise3, fleet.devices_file, policy=Policy(deadline_ms=30_000)) as session:
        def client() -> None:
            for _ in range(5):
                try:
                    result = session.run(images[:1])
                    answered.append(np.array_equal(result.logits[0], expected) and not result.degraded)
                except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
                    errors.append(repr(exc))

        threads = [threading.Thread(target=client) for _ in range(64)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
    assert not errors and len(answered) == 320 and all(answered), (errors[:3], sum(answered))


def test_the_in_process_fake_plays_the_same_runners(classwise3, images):
    """The transport the runners are unit-tested with: a device switched down degrades the answer."""
    from edgevit.cluster.plans import load_plan
    from edgevit.cluster.session import ClusterSession
    from edgevit.cluster.transport import Fault, InProcessTransport

    plan = load_plan(classwise3)
    models = {p.device: {p.name: classwise3 / p.artifact} for p in plan.pieces}
    transport = InProcessTransport(models, faults={"dev1": Fault(down=True)})
    placement = {p.name: (p.name, (p.device,)) for p in plan.pieces}
    with ClusterSession(classwise3, transport, placement, Policy(hedge=False)) as session:
        result = session.run(images[:6])
    expected = run_in_process(classwise3, images[:6], backend="onnxruntime", missing=["sub1"])
    SAME_ARTIFACTS.check(result.logits, expected.logits)
    assert result.degraded == 6 and all(a.missing == ("sub1",) for a in result.answers)


def test_run_and_deploy_refuse_bad_input_in_one_line(classwise3, tmp_path, capsys):
    from edgevit.cli import main

    assert main(["deploy", str(classwise3)]) == 1
    assert "InvalidArgumentError: say where to deploy: --url HOST:PORT" in capsys.readouterr().err
    devices = tmp_path / "devices.toml"
    devices.write_text('[[device]]\nname = "dev0"\nmemory_mb = 64\nspeed = 1.0\nlink_mbps = 100\nlink_latency_ms = 1\n')
    assert main(["run", str(classwise3), "x.png", "--devices", str(devices)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("InvalidArgumentError: ") and "has no address" in err and "Traceback" not in err
    assert main(["deploy", str(classwise3), "--devices", str(devices), "--replicas", "1"]) == 1
    assert "InvalidArgumentError: the plan puts sub1 on device 'dev1', which is not in" in capsys.readouterr().err
    small = "".join(f'[[device]]\nname = "{name}"\nmemory_mb = 0.05\nspeed = 1.0\nlink_mbps = 100\nlink_latency_ms = 1\naddress = "127.0.0.1:9"\n'
                    for name in DEVICES)
    devices.write_text(small)  # smaller than any exported sub-model: refused before any upload
    assert main(["deploy", str(classwise3), "--devices", str(devices)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("PlanningError: device 'dev0' in ") and "need" in err and "as exported" in err, err


def test_a_pinned_agent_runs_every_thread_on_the_cpus_asked_and_unusable_cpus_are_refused(tmp_path):
    import os
    from pathlib import Path

    cpu = min(os.sched_getaffinity(0))
    with Fleet(tmp_path / "fleet", [FleetDevice("pinned", memory_mb=64, cpus=(cpu,)), FleetDevice("free", memory_mb=64)]) as running:
        def allowed(name):
            tasks = Path(f"/proc/{running.processes[name].pid}/task").iterdir()
            return {line.split(":")[1].strip() for task in tasks for line in (task / "status").read_text().splitlines()
                    if line.startswith("Cpus_allowed_list:")}
        assert allowed("pinned") == {str(cpu)}  # every thread, those the agent started after it was pinned too
        assert len(list(Path(f"/proc/{running.processes['pinned'].pid}/task").iterdir())) > 1
        assert allowed("free") != {str(cpu)} or len(os.sched_getaffinity(0)) == 1
    unusable = max(os.sched_getaffinity(0)) + 1
    with pytest.raises(InvalidArgumentError, match=rf"pinned: cpus \[{unusable}\] are not all usable here"):
        Fleet(tmp_path / "again", [FleetDevice("pinned", cpus=(unusable,))])
