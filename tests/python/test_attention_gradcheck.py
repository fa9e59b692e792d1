"""qkv's attention operator judged from Python with PyTorch's own tools.

Loads libqkv_ops.so (path in $QKV_OPS_LIBRARY, set by ctest) into Debian's python3-torch and checks
torch.ops.qkv.attention with torch.autograd.gradcheck in float64 for every implementation, with and
without masks, causal, Tq != Tk, Dk != Dv and dropout, and against a plain PyTorch composition of
softmax(Q K^T * scale + mask) V. A missing interpreter module, library or operator is an error
(non-zero exit), never a silent pass.

Dimensions: B = batch, H = heads, Tq, Tk = query and key lengths, Dk, Dv = widths.
"""
import math
import os
import sys
import unittest

import torch

IMPLS = ("standard", "memory_efficient", "reference")


def load_library():
    path = os.environ.get("QKV_OPS_LIBRARY")
    if not path:
        sys.exit("QKV_OPS_LIBRARY is not set: point it to build/libqkv_ops.so")
    torch.ops.load_library(path)  # raises if the file is missing or does not link
    return torch.ops.qkv.attention


attention = load_library()


def composition(q, k, v, mask=None, causal=False, scale=None):
    """softmax(Q K^T * scale + mask) V with plain PyTorch ops; fully masked rows give zeros."""
    tq, tk = q.shape[2], k.shape[2]
    scale = 1 / math.sqrt(q.shape[3]) if scale is None else scale
    scores = q @ k.transpose(-2, -1) * scale  # [B, H, Tq, Tk]
    hidden = torch.zeros(tq, tk, dtype=torch.bool)
    if causal:  # query i sees keys j <= i + (Tk - Tq)
        hidden = torch.ones(tq, tk, dtype=torch.bool).triu(tk - tq + 1)
    hidden = hidden.view(1, 1, tq, tk)
    if mask is not None:
        hidden = hidden | mask.view(mask.shape[0], 1, 1, tk)  # [B, 1, Tq, Tk]
    empty = hidden.all(-1, keepdim=True)
    scores = scores.masked_fill(hidden & ~empty, float("-inf"))
    return scores.softmax(-1).masked_fill(empty, 0.0) @ v


def padding(b, tk, padded):
    """[B, Tk] with the last `padded` keys of batch 1 marked as padding."""
    mask = torch.zeros(b, tk, dtype=torch.bool)
    mask[1, tk - padded:] = True
    return mask


def inputs(b, h, tq, tk, dk, dv, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    make = lambda *shape: torch.randn(*shape, generator=gen, dtype=dtype).requires_grad_()
    return make(b, h, tq, dk), make(b, h, tk, dk), make(b, h, tk, dv)


# name: (B, H, Tq, Tk, Dk, Dv, padded keys of batch 1, causal)
CASES = {
    "plain": (2, 2, 3, 4, 3, 3, 0, False),
    "padding": (2, 2, 3, 4, 3, 3, 2, False),
    "causal": (2, 2, 4, 4, 3, 3, 0, True),
    "causal_tq_lt_tk": (2, 2, 2, 5, 3, 3, 0, True),
    "tq_gt_tk_dk_ne_dv": (2, 1, 5, 3, 2, 4, 0, False),
    "fully_masked_row": (2, 2, 3, 4, 3, 3, 4, False),
    "causal_padding": (2, 2, 4, 5, 3, 2, 1, True),
}


class Gradcheck(unittest.TestCase):
    def test_every_impl_and_case(self):
        for impl in IMPLS:
            for name, (b, h, tq, tk, dk, dv, padded, causal) in CASES.items():
                with self.subTest(impl=impl, case=name):
                    mask = padding(b, tk, padded) if padded else None
                    fn = lambda q, k, v: attention(q, k, v, mask, causal, None, 0.0, impl)
                    self.assertTrue(torch.autograd.gradcheck(fn, inputs(b, h, tq, tk, dk, dv)))

    def test_dropout_with_a_fixed_mask(self):
        # Reseeding inside the function fixes the dropout mask across gradcheck's evaluations.
        def fn(q, k, v, impl):
            torch.manual_seed(3)
            return attention(q, k, v, padding(2, 5, 1), True, None, 0.4, impl)

        for impl in IMPLS:
            with self.subTest(impl=impl):
                x = inputs(2, 2, 4, 5, 3, 3)
                self.assertTrue(torch.autograd.gradcheck(lambda *t: fn(*t, impl), x))


class Composition(unittest.TestCase):
    def check(self, dtype, tolerance):
        for impl in IMPLS:
            for name, (b, h, tq, tk, dk, dv, padded, causal) in CASES.items():
                with self.subTest(impl=impl, case=name, dtype=dtype):
                    tq, tk = 3 * tq, 3 * tk  # a little longer than for gradcheck
                    mask = padding(b, tk, 3 * padded) if padded else None
                    x = inputs(b, h, tq, tk, dk, dv, dtype, seed=1)
                    y = [t.detach().clone().requires_grad_() for t in x]
                    out = attention(*x, mask, causal, None, 0.0, impl)
                    expected = composition(*y, mask, causal)
                    torch.testing.assert_close(out, expected, atol=tolerance, rtol=0)
                    upstream = torch.randn_like(out)  # never just .sum()
                    grads = torch.autograd.grad(out, x, upstream)
                    expected_grads = torch.autograd.grad(expected, y, upstream)
                    for g, e in zip(grads, expected_grads):
                        torch.testing.assert_close(g, e, atol=tolerance, rtol=0)

    def test_float64(self):
        # The same sums in another order: rounding differences ~1e-15; 1e-10 is the bound asked for.
        self.check(torch.float64, 1e-10)

    def test_float32(self):
        # ~1e-7 relative rounding over short sums of O(1) terms; 1e-5 is the bound asked for.
        self.check(torch.float32, 1e-5)

    def test_textbook_example(self):
        q = torch.tensor([[[[1.0, 2.0], [2.0, 3.0]]]])
        k = torch.tensor([[[[3.0, 2.0], [1.0, 0.0]]]])
        v = torch.tensor([[[[2.0, 1.0], [1.0, 0.0]]]])
        expected = torch.tensor([[[[1.9975, 0.9975], [2.0000, 1.0000]]]])
        for impl in IMPLS:
            # 1e-4: the expected values are rounded to four decimals.
            torch.testing.assert_close(attention(q, k, v, None, False, 1.0, 0.0, impl), expected,
                                       atol=1e-4, rtol=0)


class Contract(unittest.TestCase):
    def test_schema(self):
        self.assertEqual(
            str(attention.default._schema),
            "qkv::attention(Tensor q, Tensor k, Tensor v, Tensor? key_padding_mask, bool causal, "
            "float? scale, float dropout_p, str impl) -> Tensor")

    def test_no_graph_without_grad(self):
        q, k, v = inputs(1, 2, 3, 3, 4, 4)
        for impl in IMPLS:
            with torch.no_grad():
                out = attention(q, k, v, None, False, None, 0.0, impl)
            self.assertIsNone(out.grad_fn, impl)
            self.assertFalse(out.requires_grad, impl)

    def test_same_seed_same_dropout(self):
        q, k, v = inputs(2, 2, 6, 6, 4, 4)
        for impl in IMPLS:
            torch.manual_seed(9)
            first = attention(q, k, v, None, False, None, 0.5, impl)
            torch.manual_seed(9)
            second = attention(q, k, v, None, False, None, 0.5, impl)
            self.assertTrue(torch.equal(first, second), impl)

    def test_wrong_shapes_are_refused_readably(self):
        q, k, v = inputs(1, 2, 3, 4, 5, 6)
        with self.assertRaisesRegex(RuntimeError, r"expected q \[B, H, Tq, Dk\]"):
            attention(q, k[..., :4], v, None, False, None, 0.0, "standard")
        with self.assertRaisesRegex(RuntimeError, r'unknown impl "flash"'):
            attention(q, k, v, None, False, None, 0.0, "flash")


if __name__ == "__main__":
    unittest.main()
