#!/usr/bin/env python3
"""CRI smoke test and cleanup for the test bed (see ./testbed).

smoke:   a host-network pod with a counter container (log must grow, ExecSync
         must work), a native checkpoint of it (CRI CheckpointContainer, or
         containerd's task checkpoint through ctr where CRI has none), and a
         pod with its own network namespace that must get a bridge address.
cleanup: stop and remove every pod sandbox, as kubelet would.
"""
import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
import uuid

import grpc

RUN = time.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}"


def load(gen):
    sys.path.insert(0, gen)
    import cri_min_pb2 as pb  # noqa: E402 (generated at run time)
    import cri_min_pb2_grpc as pbg  # noqa: E402
    return pb, pbg


class Step:
    """Prints one line per step with its duration; fails loudly."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.t = time.monotonic()
        return self

    def __exit__(self, typ, val, tb):
        ms = (time.monotonic() - self.t) * 1000
        print(f"{'FAIL' if typ else 'ok  '} {self.name} ({ms:.0f} ms)"
              + (f": {val}" if typ else ""), file=sys.stderr)


def pod_config(pb, name, logdir, cgroup, host_net):
    ns = pb.NamespaceOption(network=pb.NODE if host_net else pb.POD)
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=str(uuid.uuid4()),
                                       namespace="testbed", attempt=0),
        # A host-network pod shares the host UTS namespace: no hostname.
        hostname="" if host_net else name,
        # One directory per run: CRI appends to an existing log file.
        log_directory=os.path.join(logdir, f"{name}-{RUN}"),
        labels={"io.ckpt-shim.testbed": "1"},
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent=f"{cgroup}/{name}",
            security_context=pb.LinuxSandboxSecurityContext(namespace_options=ns)),
    )


def run_container(pb, rt, pod_id, cfg, image, name, cmd, annotations=None):
    os.makedirs(cfg.log_directory, exist_ok=True)
    c = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=name),
        image=pb.ImageSpec(image=image),
        command=cmd,
        annotations=annotations or {},
        log_path=f"{name}.log",
        linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext()),
    )
    cid = rt.CreateContainer(pb.CreateContainerRequest(
        pod_sandbox_id=pod_id, config=c, sandbox_config=cfg)).container_id
    rt.StartContainer(pb.StartContainerRequest(container_id=cid))
    return cid, os.path.join(cfg.log_directory, f"{name}.log")


def wait_for(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def log_lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def restore_check(pb, rt, pod, cfg, a):
    """containerd 2.1: CRI checkpoint, remove, CreateContainer from the archive."""
    with Step("counter in the own-netns pod"):
        cid, logf = run_container(
            pb, rt, pod, cfg, a.image, "counter2",
            ["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done"])
        wait_for(lambda: len(log_lines(logf)) >= 3, 10, f"3 lines in {logf}")
    loc = os.path.join(a.workdir, "checkpoint2.tar")
    with Step("CRI CheckpointContainer"):
        if os.path.exists(loc):
            os.unlink(loc)
        rt.CheckpointContainer(pb.CheckpointContainerRequest(container_id=cid, location=loc))
    with Step("CRI restore: CreateContainer from the archive"):
        rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=0))
        last = int(log_lines(logf)[-1].split()[-1])
        rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid))
        # A new pod: restoring into the pod the original ran in fails here
        # (CRIU "type NOTIFY errno 17").
        cfg3 = pod_config(pb, "tb-restore", a.logdir, a.cgroup, host_net=False)
        pod3 = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg3)).pod_sandbox_id
        a.extra_pods.append(pod3)
        rcid, rlog = run_container(pb, rt, pod3, cfg3, loc, "restored", [])
        def nums():
            return [int(line.split()[-1]) for line in log_lines(rlog)]
        wait_for(lambda: nums() and nums()[-1] > last + 2, 10, f"the counter going on in {rlog}")
        n = nums()
        # containerd 2.1 copies the old log into the new container's log; after
        # it the counter goes on from the checkpoint (which may repeat what the
        # original printed between checkpoint and stop).  A fresh start would
        # begin again at 1.
        assert all(y > 1 for x, y in zip(n, n[1:]) if y <= x), n
        print(f"     counter was {last} when stopped; restored log goes on to {n[-1]}",
              file=sys.stderr)


def remove_pod(pb, rt, pod_id):
    rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id))


def smoke(pb, rt, img, a):
    v = rt.Version(pb.VersionRequest())
    print(f"runtime {v.runtime_name} {v.runtime_version} (CRI {v.runtime_api_version})",
          file=sys.stderr)
    pods = a.extra_pods = []
    with Step("PullImage through the local registry"):
        ref = img.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=a.image))).image_ref
        print(f"     {a.image} -> {ref}", file=sys.stderr)
    try:
        with Step("RunPodSandbox host network"):
            cfg = pod_config(pb, "tb-host", a.logdir, a.cgroup, host_net=True)
            pod = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
            pods.append(pod)
        with Step("CreateContainer+StartContainer counter"):
            cid, logf = run_container(
                pb, rt, pod, cfg, a.image, "counter",
                ["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done"],
                annotations={"io.ckpt-shim.testbed": "passthrough", "other.example/x": "dropped"})
        with Step("io.ckpt-shim.* annotation reaches the OCI spec"):
            spec_path = os.path.join(a.state, "io.containerd.runtime.v2.task", "k8s.io", cid,
                                     "config.json")
            with open(spec_path) as f:
                ann = json.load(f).get("annotations", {})
            assert ann.get("io.ckpt-shim.testbed") == "passthrough", ann
            assert "other.example/x" not in ann, ann
        with Step("container log has output"):
            wait_for(lambda: len(log_lines(logf)) >= 3, 10, f"3 lines in {logf}")
            print(f"     {logf}: {log_lines(logf)[0]!r}", file=sys.stderr)
        with Step("ExecSync"):
            r = rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["hostname"], timeout=10))
            assert r.exit_code == 0, r
        os.makedirs(a.workdir, exist_ok=True)
        if a.checkpoint == "cri":
            with Step("CRI CheckpointContainer"):
                loc = os.path.join(a.workdir, "checkpoint.tar")
                if os.path.exists(loc):
                    os.unlink(loc)
                rt.CheckpointContainer(pb.CheckpointContainerRequest(
                    container_id=cid, location=loc))
                with tarfile.open(loc) as t:
                    names = t.getnames()
                assert any(n.startswith("checkpoint/") for n in names), names
                print(f"     {loc}: {os.path.getsize(loc)} bytes, {len(names)} members",
                      file=sys.stderr)
        else:
            with Step("native task checkpoint (ctr, CRIU)"):
                img = os.path.join(a.workdir, "criu-images")
                work = os.path.join(a.workdir, "criu-work")
                subprocess.run(["rm", "-rf", img, work], check=True)
                subprocess.run([a.ctr, "--address", a.socket, "-n", "k8s.io", "tasks",
                                "checkpoint", "--image-path", img, "--work-path", work, cid],
                               check=True, stdout=sys.stderr)
                assert os.path.exists(os.path.join(img, "inventory.img")), os.listdir(img)
                print(f"     {img}: {len(os.listdir(img))} files", file=sys.stderr)
        with Step("container still running after checkpoint"):
            n = len(log_lines(logf))
            wait_for(lambda: len(log_lines(logf)) > n, 5, "log growth")
            st = rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid)).status
            assert st.state == pb.CONTAINER_RUNNING, st

        with Step("RunPodSandbox own netns (bridge CNI)"):
            cfg2 = pod_config(pb, "tb-netns", a.logdir, a.cgroup, host_net=False)
            pod2 = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg2)).pod_sandbox_id
            pods.append(pod2)
        with Step("pod has a bridge address"):
            cid2, _ = run_container(pb, rt, pod2, cfg2, a.image, "sleeper", ["sleep", "3600"])
            r = rt.ExecSync(pb.ExecSyncRequest(container_id=cid2,
                                               cmd=["ip", "-4", "-o", "addr", "show", "eth0"],
                                               timeout=10))
            out = r.stdout.decode()
            assert r.exit_code == 0 and "inet 10.233." in out, (r.exit_code, out, r.stderr)
            print(f"     {out.split()[3]}", file=sys.stderr)
        if a.checkpoint == "cri":
            restore_check(pb, rt, pod2, cfg2, a)
    finally:
        for p in pods if not a.keep else []:
            with Step(f"StopPodSandbox+RemovePodSandbox {p[:12]}"):
                remove_pod(pb, rt, p)
    print("selftest passed" + (" (pods kept)" if a.keep else ""), file=sys.stderr)


def cleanup(pb, rt):
    for p in rt.ListPodSandbox(pb.ListPodSandboxRequest()).items:
        try:
            remove_pod(pb, rt, p.id)
        except grpc.RpcError as e:
            print(f"removing pod {p.id[:12]}: {e.details()}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gen", required=True)
    ap.add_argument("--socket", required=True)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("smoke")
    s.add_argument("--image", required=True)
    s.add_argument("--logdir", required=True)
    s.add_argument("--cgroup", required=True)
    s.add_argument("--checkpoint", choices=["cri", "native-task"], required=True)
    s.add_argument("--ctr", required=True)
    s.add_argument("--workdir", required=True)
    s.add_argument("--state", required=True, help="containerd's state dir (bundles)")
    s.add_argument("--keep", action="store_true", help="leave the pods running")
    sub.add_parser("cleanup")
    a = ap.parse_args()
    pb, pbg = load(a.gen)
    ch = grpc.insecure_channel(f"unix://{a.socket}")
    rt = pbg.RuntimeServiceStub(ch)
    if a.cmd == "smoke":
        smoke(pb, rt, pbg.ImageServiceStub(ch), a)
    else:
        cleanup(pb, rt)


if __name__ == "__main__":
    main()
