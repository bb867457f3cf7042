"""Side-by-side forward-pass comparison: waste-model (Rust) vs onnxruntime on the same weights.

Exports <ml-root>/model (safetensors + model.json, BatchNorm already folded) to ONNX with the
`onnx` helper API, runs `waste-model bench` on the same image (which also dumps the exact input
tensor it used), then times onnxruntime on that tensor, batch 1, one thread, and checks the
outputs agree. Pinned: see requirements-onnx.txt.

    python3 -m venv /tmp/ortvenv && /tmp/ortvenv/bin/pip install -r model/bench/requirements-onnx.txt
    /tmp/ortvenv/bin/python model/bench/onnx_compare.py --bin target/release/waste-model --ml-root /tmp/full
"""

import argparse
import json
import os
import struct
import subprocess
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--ml-root", required=True)
    ap.add_argument("--iterations", type=int, default=2000)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    onnx_path = os.path.join(tmp, "model.onnx")
    s = export(os.path.join(args.ml_root, "model"), onnx_path)
    tensor_path = os.path.join(tmp, "input.bin")
    rust = json.loads(subprocess.check_output(
        [args.bin, "bench", "--ml-root", args.ml_root, "--iterations", str(args.iterations),
         "--output", "json", "--dump-input", tensor_path]))
    x = np.fromfile(tensor_path, dtype="<f4").reshape(1, 3, s, s)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
    for _ in range(200):
        sess.run(None, {"input": x})
    times = []
    for _ in range(args.iterations):
        t = time.perf_counter()
        probs = sess.run(None, {"input": x})[0]
        times.append((time.perf_counter() - t) * 1e6)
    times.sort()
    p = lambda q: times[min(len(times) - 1, round((len(times) - 1) * q))]
    diff = float(np.max(np.abs(probs[0] - np.array(rust["probabilities"], dtype=np.float32))))
    print(json.dumps({
        "waste_model_forward_p50_us": rust["forward_p50_us"],
        "waste_model_forward_p99_us": rust["forward_p99_us"],
        "onnxruntime_forward_p50_us": p(0.5),
        "onnxruntime_forward_p99_us": p(0.99),
        "onnxruntime_version": ort.__version__,
        "max_abs_probability_difference": diff,
        "waste_model_probabilities": rust["probabilities"],
        "onnxruntime_probabilities": probs[0].tolist(),
        "load_average_1m": rust["load_average_1m"],
    }, indent=2))


if __name__ == "__main__":
    main()
