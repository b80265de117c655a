"""The conv fiRevNet of `builders.conv(batch_norm=False)` in FrEIA (PyTorch), for `bench/peer_freia.py`.

A `Ff.GraphINN` of `Fm.IRevNetDownsampling` (squeeze), `Fm.ActNorm`, `Fm.Split` (factor-out)
and, since FrEIA has no learned 1x1 convolution and no one-sided additive coupling, two small
modules written here in FrEIA's `InvertibleModule` interface: `LU1x1Conv` (Glow's LU 1x1
convolution, as our `Invertible1x1Conv`) and `AdditiveCouplingOneSided` (the additive half of
FrEIA's `NICECouplingBlock`, with our swap of halves). `coupling="nice"` uses FrEIA's stock
`NICECouplingBlock` (two couplings per block) instead: ActNorm -> 1x1 -> NICE per two couplings,
the same couplings but half the ActNorms and 1x1 convolutions. Channels first (NCHW), as torch.

Only torch, FrEIA, numpy and scipy are imported: no TensorFlow in a FrEIA worker process.
"""

import FrEIA.framework as Ff
import FrEIA.modules as Fm
import numpy as np
import scipy.linalg
import torch
from torch import nn


def frequency_order(height, width):
    """`invertible_keras.layers.dct.frequency_order` (diagonal order), without importing TensorFlow."""
    pairs = sorted(((u, v) for u in range(height) for v in range(width)), key=lambda p: (p[0] + p[1], p[0]))
    return np.array([u * width + v for u, v in pairs], dtype=np.int32)

class LU1x1Conv(Fm.InvertibleModule):
    """Glow's LU-parameterised invertible 1x1 convolution, as `Invertible1x1Conv` (FrEIA has none)."""

    def __init__(self, dims_in, dims_c=None, seed=0):
        super().__init__(dims_in, dims_c)
        c = dims_in[0][0]
        rotation, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((c, c)))
        permutation, lower, upper = scipy.linalg.lu(rotation)  # rotation = P L U
        s = np.diag(upper)
        as_tensor = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
        self.register_buffer("permutation", as_tensor(permutation))
        self.register_buffer("sign_s", as_tensor(np.sign(s)))
        self.register_buffer("eye", torch.eye(c))
        self.lower = nn.Parameter(as_tensor(lower))
        self.upper = nn.Parameter(as_tensor(np.triu(upper, 1)))
        self.log_abs_s = nn.Parameter(as_tensor(np.log(np.abs(s))))
        self.positions = float(np.prod(dims_in[0][1:]))

    def weight(self):
        lower = torch.tril(self.lower, -1) + self.eye
        upper = torch.triu(self.upper, 1) + torch.diag(self.sign_s * torch.exp(self.log_abs_s))
        return self.permutation @ lower @ upper  # y = x @ W over channels

    def forward(self, x, rev=False, jac=True):
        w = self.weight()
        if rev:
            w = torch.inverse(w)
        y = nn.functional.conv2d(x[0], w.t()[:, :, None, None])
        log_det = self.positions * self.log_abs_s.sum() * (-1 if rev else 1)
        return (y,), log_det.expand(x[0].shape[0])

    def output_dims(self, input_dims):
        return input_dims


class AdditiveCouplingOneSided(Fm.InvertibleModule):
    """y = [x2 + f(x1), x1]: one additive coupling and a swap, as our `AdditiveCoupling`."""

    def __init__(self, dims_in, dims_c=None, subnet_constructor=None):
        super().__init__(dims_in, dims_c)
        self.half = dims_in[0][0] // 2
        self.subnet = subnet_constructor(self.half, dims_in[0][0] - self.half)

    def forward(self, x, rev=False, jac=True):
        if not rev:
            x1, x2 = torch.split(x[0], [self.half, x[0].shape[1] - self.half], dim=1)
            return (torch.cat([x2 + self.subnet(x1), x1], 1),), 0.0
        y2, x1 = torch.split(x[0], [x[0].shape[1] - self.half, self.half], dim=1)
        return (torch.cat([x1, y2 - self.subnet(x1)], 1),), 0.0

    def output_dims(self, input_dims):
        return input_dims


def subnet_constructor(filters):
    def make(c_in, c_out):
        last = nn.Conv2d(filters, c_out, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        return nn.Sequential(nn.Conv2d(c_in, filters, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(filters, filters, 1), nn.ReLU(), last)
    return make


def dct_readout_basis(height, width):
    """(H * W, H, W) orthonormal 2D DCT-II basis functions in `DCTPooling`'s frequency order."""
    def dct_matrix(n):
        k, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        m = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
        m[0] /= np.sqrt(2.0)
        return m
    dh, dw = dct_matrix(height), dct_matrix(width)
    return np.stack([np.outer(dh[f // width], dw[f % width]) for f in frequency_order(height, width)])


class FreiaFiRevNet(nn.Module):
    """The builders.conv layout as a FrEIA GraphINN; `forward` returns the logits."""

    def __init__(self, couplings, filters, input_shape=(28, 28, 1), num_classes=10, coupling="one_sided", seed=0,
                 factor_out=False):
        super().__init__()
        if coupling not in ("one_sided", "nice"):
            raise ValueError(f"`coupling` must be 'one_sided' or 'nice'. Received: coupling={coupling!r}")
        self.num_classes = num_classes
        make_subnet = subnet_constructor(filters)
        h, w, c = input_shape
        nodes = [Ff.InputNode(c, h, w, name="x")]
        outputs = []
        for stage in range(3):
            if h % 2 == 0 and w % 2 == 0:
                nodes.append(Ff.Node(nodes[-1], Fm.IRevNetDownsampling, {}))
                h, w = h // 2, w // 2
            steps = couplings if coupling == "one_sided" else couplings // 2
            for step in range(steps):
                nodes.append(Ff.Node(nodes[-1], Fm.ActNorm, {}))
                nodes.append(Ff.Node(nodes[-1], LU1x1Conv, {"seed": seed + stage * couplings + step}))
                block = AdditiveCouplingOneSided if coupling == "one_sided" else Fm.NICECouplingBlock
                nodes.append(Ff.Node(nodes[-1], block, {"subnet_constructor": make_subnet}))
            if factor_out and stage < 2:  # factor out the second half, keep the first
                split = Ff.Node(nodes[-1], Fm.Split, {"n_sections": 2, "dim": 0})
                nodes.append(split)
                outputs.append(Ff.OutputNode((split, 1), name=f"factored_{stage + 1}"))
        self.last = Ff.OutputNode(nodes[-1], name="last_stage")  # (split, 0) after a split: the kept half
        self.inn = Ff.GraphINN(nodes + outputs + [self.last], force_tuple_output=True)  # one output too
        self.last_index = self.inn.out_nodes.index(self.last)
        self.register_buffer("basis", torch.tensor(dct_readout_basis(h, w), dtype=torch.float32))

    def forward(self, x):
        outputs, _ = self.inn(x, jac=False)
        last = outputs[self.last_index]  # (B, C, H, W)
        channels = last.shape[1]
        freqs = -(-self.num_classes // channels)  # ceil: frequencies needed for the logits
        coeffs = torch.einsum("bchw,fhw->bfc", last, self.basis[:freqs])
        return coeffs.reshape(x.shape[0], -1)[:, :self.num_classes]
