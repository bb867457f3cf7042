"""Side by side with onnxruntime on the same weights, in one run: forward pass and /invocations.

1. Forward pass. Exports <ml-root>/model (safetensors + model.json, BatchNorm already folded) to
   ONNX with the `onnx` helper API, runs `waste-model bench --image <jpeg> --dump-input` (which
   also dumps the exact input tensor it used), then times onnxruntime on that tensor, batch 1,
   one thread, and checks the outputs agree.
2. /invocations end to end. Starts `waste-model serve` and a minimal Python onnxruntime server
   (this file with --ort-serve: ThreadingHTTPServer, GET /ping, POST /invocations with
   image/jpeg -> the same JSON shape {label, confidence, probabilities, model_id}), both on
   127.0.0.1 on free ports, each in its own process. The onnxruntime server preprocesses like
   the Rust model: input size and normalisation from model.json; Pillow decode, EXIF
   orientation, RGB, resize to the input size with Pillow's BOX (area-average) filter, scale to
   [0, 1], (x - mean) / std, NCHW float32; one-thread session. The resize filter may differ
   slightly from the Rust one (rounding of the area average, and Pillow's JPEG decoder), so
   probabilities may differ in the last digits. The same 256x256 JPEG is then sent --requests
   times (after --warmup) to each server over one keep-alive loopback connection each
   (http.client, TCP_NODELAY), in alternating blocks of 50 so both see the same machine load,
   and p50/p90/p99 are reported side by side. Both servers also classify the images of
   `waste-model synth --count 20 --seed 5` and the labels are compared. Both servers are
   stopped (SIGTERM to their PIDs) at the end, also on error.

The 256x256 JPEG (unless --image is given): the first image of that synthetic set, resized to
256x256 with Pillow, seeded pixel noise (sigma 8, like the synthetic renderer) added, saved at
quality 90. `waste-model bench` gets the same file, so every figure is for the same image. The
client is Python, so the /invocations figures include the same Python client cost for both
servers (they are higher than `waste-model bench`'s own Rust-client figures, also reported).

Pinned: see requirements-onnx.txt.

    python3 -m venv /tmp/ortvenv && /tmp/ortvenv/bin/pip install -r model/bench/requirements-onnx.txt
    /tmp/ortvenv/bin/python model/bench/onnx_compare.py --bin target/release/waste-model --ml-root /tmp/full
"""

import argparse
import glob
import http.client
import io
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from PIL import Image, ImageOps


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", name
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(body[a:b], dtype="<f4").reshape(info["shape"])
    return out


def export(model_dir, onnx_path):
    meta = json.load(open(os.path.join(model_dir, "model.json")))
    w = load_safetensors(os.path.join(model_dir, meta["weights_file"]))
    arch = meta["architecture"]
    s = arch["input_size"]
    nodes, inits = [], []
    prev = "input"
    for i, conv in enumerate(arch["convs"]):
        inits += [numpy_helper.from_array(w[f"conv{i}.weight"], f"conv{i}.weight"),
                  numpy_helper.from_array(w[f"conv{i}.bias"], f"conv{i}.bias")]
        st = conv["stride"]
        nodes.append(helper.make_node("Conv", [prev, f"conv{i}.weight", f"conv{i}.bias"], [f"c{i}"],
                                      kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[st, st]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        prev = f"r{i}"
    inits += [numpy_helper.from_array(w["fc.weight"], "fc.weight"),
              numpy_helper.from_array(w["fc.bias"], "fc.bias")]
    nodes += [helper.make_node("GlobalAveragePool", [prev], ["gap"]),
              helper.make_node("Flatten", ["gap"], ["flat"]),
              helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], transB=1),
              helper.make_node("Softmax", ["logits"], ["probs"], axis=1)]
    graph = helper.make_graph(nodes, "waste-model",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, s, s])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, arch["classes"]])],
                              inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(m)
    onnx.save(m, onnx_path)
    return s


def percentile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, round((len(sorted_values) - 1) * q))]


def session(onnx_path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------- onnxruntime server (--ort-serve)

def ort_serve(onnx_path, model_dir, port):
    """Minimal SageMaker-contract server on 127.0.0.1:port backed by onnxruntime."""
    meta = json.load(open(os.path.join(model_dir, "model.json")))
    size = meta["input_size"]
    labels = meta["labels"]
    mean = np.array(meta["normalization"]["mean"], dtype=np.float32)
    std = np.array(meta["normalization"]["std"], dtype=np.float32)
    scale = (1.0 / (255.0 * std)).astype(np.float32)
    shift = (mean / std).astype(np.float32)
    model_id = "onnxruntime-" + meta.get("weights_sha256", "unknown")[:16]
    sess = session(onnx_path)

    def prepare(body):
        img = Image.open(io.BytesIO(body))
        img = ImageOps.exif_transpose(img).convert("RGB").resize((size, size), Image.BOX)
        x = np.asarray(img, dtype=np.float32) * scale - shift  # HWC
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])  # NCHW

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *args):
            pass

        def reply(self, status, obj):
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/ping":
                self.reply(200, {"status": "ok"})
            else:
                self.reply(404, {"error": "not found"})

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(n)
            if self.path != "/invocations":
                return self.reply(404, {"error": "not found"})
            ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if ctype not in ("image/jpeg", "image/png", "application/x-image"):
                return self.reply(415, {"error": "send image/jpeg or image/png"})
            try:
                x = prepare(body)
            except Exception as e:  # noqa: BLE001 - any decode failure is the client's
                return self.reply(400, {"error": f"cannot decode image: {e}"})
            probs = sess.run(None, {"input": x})[0][0]
            best = int(np.argmax(probs))
            self.reply(200, {
                "label": labels[best],
                "confidence": float(probs[best]),
                "probabilities": {l: float(p) for l, p in zip(labels, probs)},
                "model_id": model_id,
            })

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


# ---------------------------------------------------------------- client side

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(name, proc, port, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode} before answering /ping")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/ping")
            r = c.getresponse()
            r.read()
            c.close()
            if r.status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not answer /ping with 200 within {timeout} s")


class Client:
    """One keep-alive loopback connection."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def invoke(self, body):
        self.conn.request("POST", "/invocations", body, {"Content-Type": "image/jpeg"})
        r = self.conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError(f"/invocations answered {r.status}: {data[:200]!r}")
        return json.loads(data)

    def close(self):
        self.conn.close()


def stop(proc):
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()  # SIGTERM to this PID
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def make_jpeg(src_path, out_path, side=256, seed=1):
    img = Image.open(src_path).convert("RGB").resize((side, side), Image.BICUBIC)
    a = np.asarray(img, dtype=np.float32)
    a += np.random.default_rng(seed).normal(0.0, 8.0, a.shape).astype(np.float32)
    Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8)).save(out_path, quality=90)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", help="waste-model binary")
    ap.add_argument("--ml-root")
    ap.add_argument("--iterations", type=int, default=2000, help="forward passes per runtime")
    ap.add_argument("--requests", type=int, default=500, help="timed /invocations per server")
    ap.add_argument("--warmup", type=int, default=50, help="untimed /invocations per server first")
    ap.add_argument("--image", help="JPEG to send (default: a 256x256 JPEG made from synthetic data)")
    ap.add_argument("--ort-serve", metavar="ONNX", help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ort_serve:
        return ort_serve(args.ort_serve, args.model_dir, args.port)
    if not args.bin or not args.ml_root:
        ap.error("--bin and --ml-root are required")

    load_start = os.getloadavg()[0]
    tmp = tempfile.mkdtemp()
    model_dir = os.path.join(args.ml_root, "model")
    onnx_path = os.path.join(tmp, "model.onnx")
    s = export(model_dir, onnx_path)

    synth_dir = os.path.join(tmp, "synth")
    subprocess.run([args.bin, "synth", "--out", synth_dir, "--count", "20", "--seed", "5"],
                   check=True, capture_output=True)
    synth_images = sorted(p for p in glob.glob(os.path.join(synth_dir, "**", "*"), recursive=True)
                          if p.lower().endswith((".jpg", ".jpeg")))
    if args.image:
        image_path = args.image
    else:
        image_path = os.path.join(tmp, "request-256.jpg")
        make_jpeg(synth_images[0], image_path)
    body = open(image_path, "rb").read()
    with Image.open(image_path) as im:
        image_size = im.size

    # 1. Forward pass on the identical input tensor.
    tensor_path = os.path.join(tmp, "input.bin")
    rust = json.loads(subprocess.check_output(
        [args.bin, "bench", "--ml-root", args.ml_root, "--iterations", str(args.iterations),
         "--image", image_path, "--output", "json", "--dump-input", tensor_path]))
    x = np.fromfile(tensor_path, dtype="<f4").reshape(1, 3, s, s)
    sess = session(onnx_path)
    for _ in range(200):
        sess.run(None, {"input": x})
    times = []
    for _ in range(args.iterations):
        t = time.perf_counter()
        probs = sess.run(None, {"input": x})[0]
        times.append((time.perf_counter() - t) * 1e6)
    times.sort()
    diff = float(np.max(np.abs(probs[0] - np.array(rust["probabilities"], dtype=np.float32))))

    # 2. /invocations end to end, both servers up at once, alternating blocks.
    procs = {}
    clients = {}
    try:
        ports = {"waste-model": free_port(), "onnxruntime": free_port()}
        procs["waste-model"] = subprocess.Popen(
            [args.bin, "serve", "--ml-root", args.ml_root, "--host", "127.0.0.1",
             "--port", str(ports["waste-model"])],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "serve.log"), "wb"))
        procs["onnxruntime"] = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--ort-serve", onnx_path,
             "--model-dir", model_dir, "--port", str(ports["onnxruntime"])],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "ort-serve.log"), "wb"))
        for name, proc in procs.items():
            wait_ready(name, proc, ports[name])
            clients[name] = Client(ports[name])
        first = {}
        for name, c in clients.items():
            for _ in range(max(1, args.warmup)):
                first[name] = c.invoke(body)
        lat = {name: [] for name in clients}
        block = 50
        while any(len(v) < args.requests for v in lat.values()):
            for name, c in clients.items():
                for _ in range(min(block, args.requests - len(lat[name]))):
                    t = time.perf_counter()
                    c.invoke(body)
                    lat[name].append((time.perf_counter() - t) * 1e6)
        for v in lat.values():
            v.sort()

        agree, disagreements, max_prob_diff = 0, [], 0.0
        for path in synth_images:
            a = clients["waste-model"].invoke(open(path, "rb").read())
            b = clients["onnxruntime"].invoke(open(path, "rb").read())
            max_prob_diff = max(max_prob_diff, max(abs(a["probabilities"][k] - b["probabilities"][k])
                                                   for k in a["probabilities"]))
            if a["label"] == b["label"]:
                agree += 1
            else:
                disagreements.append({"file": os.path.relpath(path, synth_dir),
                                      "waste_model": a["probabilities"],
                                      "onnxruntime": b["probabilities"]})
    finally:
        for c in clients.values():
            c.close()
        for proc in procs.values():
            stop(proc)

    report = {
        "image": image_path if args.image else "generated",
        "image_size": list(image_size),
        "image_bytes": len(body),
        "waste_model_forward_p50_us": rust["forward_p50_us"],
        "waste_model_forward_p90_us": rust["forward_p90_us"],
        "waste_model_forward_p99_us": rust["forward_p99_us"],
        "onnxruntime_forward_p50_us": percentile(times, 0.5),
        "onnxruntime_forward_p90_us": percentile(times, 0.9),
        "onnxruntime_forward_p99_us": percentile(times, 0.99),
        "max_abs_probability_difference": diff,
        "waste_model_probabilities": rust["probabilities"],
        "onnxruntime_probabilities": probs[0].tolist(),
        "requests_per_server": args.requests,
        "warmup_per_server": args.warmup,
    }
    for name, key in (("waste-model", "waste_model"), ("onnxruntime", "onnxruntime")):
        for q in (50, 90, 99):
            report[f"{key}_invocation_p{q}_us"] = percentile(lat[name], q / 100)
    report.update({
        "waste_model_bench_rust_client_invocation_p50_us": rust["invocation_p50_us"],
        "waste_model_bench_rust_client_invocation_p99_us": rust["invocation_p99_us"],
        "served_labels_on_image": {n: first[n]["label"] for n in first},
        "max_abs_served_probability_difference_image": max(
            abs(first["waste-model"]["probabilities"][k] - first["onnxruntime"]["probabilities"][k])
            for k in first["waste-model"]["probabilities"]),
        "served_model_ids": {n: first[n]["model_id"] for n in first},
        "label_agreement": f"{agree}/{len(synth_images)}",
        "label_disagreements": disagreements,
        "max_abs_served_probability_difference_synth": max_prob_diff,
        "onnxruntime_version": ort.__version__,
        "pillow_version": Image.__version__,
        "load_average_1m_start": load_start,
        "load_average_1m_bench": rust["load_average_1m"],
        "load_average_1m_end": os.getloadavg()[0],
    })
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
