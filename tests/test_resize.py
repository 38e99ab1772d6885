"""preprocess.fit_array: the exact integer area resize of docs/FORMAT.md section 10.

Two oracles written straight from the definition, sharing no code with the implementation:
exact rational arithmetic (fractions.Fraction) for small images, and the dense weight matrices
in float64 (every partial sum an integer below 2**53, so BLAS computes it exactly) for large
ones, including sides past 4096 where the sums need 64 bits.
"""
from fractions import Fraction

import numpy as np
import pytest

from pynq_bnn.errors import ImageError
from pynq_bnn.host.preprocess import fit_array, load_image


def weights(s, n):
    """w[j, i]: length of [i*n, (i+1)*n) intersected with [j*s, (j+1)*s) (the definition)."""
    i = np.arange(s)[None, :]
    j = np.arange(n)[:, None]
    return np.maximum(0, np.minimum((i + 1) * n, (j + 1) * s) - np.maximum(i * n, j * s))


def centre(a):
    h, w = a.shape[:2]
    s = min(h, w)
    return a[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]


def oracle_fraction(a, n):
    q = centre(a)
    s = q.shape[0]
    wt = weights(s, n).tolist()
    q3 = q.reshape(s, s, -1)
    out = np.zeros((n, n, q3.shape[2]), np.uint8)
    for c in range(q3.shape[2]):
        p = q3[:, :, c].tolist()
        for j in range(n):
            for k in range(n):
                total = sum(wt[j][i] * wt[k][x] * p[i][x]
                            for i in range(s) if wt[j][i] for x in range(s) if wt[k][x])
                mean = Fraction(total, s * s)
                out[j, k, c] = int(mean + Fraction(1, 2))  # floor(mean + 1/2): half up
    return out.reshape((n, n) + q.shape[2:])


def oracle_dense(a, n):
    q = centre(a)
    s = q.shape[0]
    w = weights(s, n).astype(np.float64)
    q3 = q.reshape(s, s, -1).astype(np.float64)
    total = np.stack([w @ q3[:, :, c] @ w.T for c in range(q3.shape[2])], -1)
    assert total.max() < 2 ** 53
    t = total.astype(np.int64)
    d = s * s
    out = (2 * t + d) // (2 * d)
    return out.astype(np.uint8).reshape((n, n) + q.shape[2:])


def rand(shape, seed):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize("seed", range(40))
def test_matches_exact_rational_arithmetic(seed):
    rng = np.random.default_rng(1000 + seed)
    h, w = (int(v) for v in rng.integers(1, 70, 2))
    n = int(rng.integers(1, 40))
    a = rand((h, w, 3), seed)
    np.testing.assert_array_equal(fit_array(a, n), oracle_fraction(a, n))


@pytest.mark.parametrize("h,w", [(480, 640), (375, 500), (1000, 1), (97, 4000), (257, 257),
                                 (33, 1024), (1200, 1600), (31, 31)])
def test_matches_the_dense_weights_on_camera_and_photo_sizes(h, w):
    a = rand((h, w, 3), h + w)
    np.testing.assert_array_equal(fit_array(a, 32), oracle_dense(a, 32))
    np.testing.assert_array_equal(fit_array(a, 7), oracle_dense(a, 7))


@pytest.mark.parametrize("s", [4200])  # 255 * s * s > 2 ** 32
def test_sides_past_4096_need_64_bit_sums_and_get_them(s):
    a = np.full((s, s), 255, np.uint8)          # the largest sums: must not wrap around
    assert (fit_array(a, 32) == 255).all()
    b = rand((s, s), s)
    np.testing.assert_array_equal(fit_array(b, 32), oracle_dense(b, 32))


def test_rounding_is_half_up_exactly_at_ties():
    # 64 -> 32: each output is the mean of a 2 x 2 block; means .25, .5, .75, 1.5, 254.5
    blocks = {(0, 0, 0, 1): 0, (0, 0, 1, 1): 1, (0, 1, 1, 1): 1, (1, 1, 2, 2): 2,
              (254, 254, 255, 255): 255, (3, 3, 3, 3): 3}
    for values, expected in blocks.items():
        a = np.tile(np.array(values, np.uint8).reshape(2, 2), (32, 32))
        assert (fit_array(a, 32) == expected).all(), values
    # a 2-D tie: 6 x 6 blocks (192 -> 32), sum 18 * 255 over 36 pixels = 127.5 -> 128
    half = np.zeros((6, 6), np.uint8)
    half[:3] = 255
    assert (fit_array(np.tile(half, (32, 32)), 32) == 128).all()
    half[:3] = 1                           # 18 / 36 = 0.5 -> 1
    assert (fit_array(np.tile(half, (32, 32)), 32) == 1).all()


def test_identity_crop_and_channels():
    a = rand((32, 32, 3), 1)
    assert fit_array(a, 32) is a                  # already the size and contiguous: as is
    b = rand((32, 50, 3), 2)
    np.testing.assert_array_equal(fit_array(b, 32), b[:, 9:41])   # (50 - 32) // 2 = 9
    # channels are independent: any count, and a grey 2-D image
    c = rand((90, 70, 5), 3)
    out = fit_array(c, 32)
    for ch in range(5):
        np.testing.assert_array_equal(out[:, :, ch], fit_array(c[:, :, ch], 32))
    assert fit_array(c[:, :, 0], 32).shape == (32, 32)


def test_non_contiguous_inputs_give_the_same_pixels():
    a = rand((120, 160, 3), 4)
    bgr_view = a[:, :, ::-1]
    np.testing.assert_array_equal(fit_array(bgr_view, 32), fit_array(a, 32)[:, :, ::-1])
    np.testing.assert_array_equal(fit_array(a[::2, ::2], 32),
                                  fit_array(np.ascontiguousarray(a[::2, ::2]), 32))
    np.testing.assert_array_equal(fit_array(np.asfortranarray(a), 32), fit_array(a, 32))


def test_integer_multiples_of_a_32x32_image_give_it_back():
    """A pixel-replicated upscale (64, 96, 480 = 15 x 32) averages back to the original."""
    a = rand((32, 32, 3), 5)
    for k in (2, 3, 15):
        big = np.repeat(np.repeat(a, k, axis=0), k, axis=1)
        np.testing.assert_array_equal(fit_array(big, 32), a)
        framed = np.zeros((32 * k, 32 * k + 2 * 7, 3), np.uint8)   # side bars are cropped away
        framed[:, 7:7 + 32 * k] = big
        np.testing.assert_array_equal(load_image(framed), a)


def test_bad_arguments():
    with pytest.raises(ImageError, match="uint8"):
        fit_array(np.zeros((8, 8, 3), np.float32), 4)
    with pytest.raises(ImageError, match="pixels"):
        fit_array(np.zeros((0, 8, 3), np.uint8), 4)
    with pytest.raises(ImageError):
        fit_array(np.zeros((2, 8, 8, 3), np.uint8), 4)
    with pytest.raises(ValueError, match="size"):
        fit_array(np.zeros((8, 8, 3), np.uint8), 0)


# ------------------------------------------------------------------------------ native resize
# pynq_bnn/backends/cpu/bnn_resize.c (engine.fit_area), which fit_array runs when the library
# is built, against the numpy code (the reference, forced with preprocess._use_native = False).

from pynq_bnn.backends.cpu import engine as cpu_engine  # noqa: E402
from pynq_bnn.host import preprocess  # noqa: E402

native = pytest.mark.skipif(not cpu_engine.fit_area_available(),
                            reason="native library (with bnn_resize.c) not built")
NATIVE_ISAS = ["auto", "portable"]


@pytest.fixture
def numpy_fit(monkeypatch):
    """fit_array with the native resize switched off: the numpy reference."""
    def fit(a, n):
        with monkeypatch.context() as m:
            m.setattr(preprocess, "_use_native", False)
            return fit_array(a, n)
    return fit


def native_cases():
    rng = np.random.default_rng(77)
    cases = []
    for _ in range(150):  # random sizes, both orientations, outputs up to 64
        h, w = (int(v) for v in rng.integers(1, 260, 2))
        cases.append((h, w, 3, int(rng.integers(1, min(h, w, 64) + 1))))
    cases += [(1, 700, 3, 1), (700, 1, 3, 1), (5, 999, 3, 3), (999, 5, 3, 5), (2, 2, 3, 1)]
    # crop widths around the 16-byte column blocks (m = s * c = 15, 16, 17, 47, 48, 49, ...)
    for s, c in ((5, 3), (15, 1), (16, 1), (17, 1), (16, 3), (17, 3), (31, 3), (32, 3),
                 (33, 3), (47, 1), (48, 1), (49, 1), (63, 4), (65, 5)):
        for n in sorted({1, 2, 3, s // 2, s - 1}):
            if 1 <= n < s:
                cases.append((s + 3, s, c, n))
    # runs of more than 257 rows (split in 16-bit pieces), odd sides, camera frames
    cases += [(600, 601, 3, 2), (777, 1031, 3, 1), (480, 640, 3, 32), (480, 640, 3, 31),
              (481, 641, 3, 32), (375, 500, 3, 32), (1080, 1920, 3, 32)]
    return cases


@native
@pytest.mark.parametrize("isa", NATIVE_ISAS)
def test_native_matches_numpy_over_many_sizes(isa, numpy_fit):
    for i, (h, w, c, n) in enumerate(native_cases()):
        a = rand((h, w, c), i)
        got = cpu_engine.fit_area(a, n, isa=isa)
        np.testing.assert_array_equal(got, numpy_fit(a, n), err_msg=f"{(h, w, c)} -> {n}")


@native
@pytest.mark.parametrize("h,w,n", [(4065, 4065, 7), (4100, 4100, 1), (4103, 4096, 1),
                                   (4200, 4300, 32)])
def test_native_sides_past_4064_take_the_wide_sums(h, w, n, numpy_fit):
    """Past s ~ 4064 the column sums need 64 bits; near s = 4100 with n = 1 the 32-bit check
    of the rounding (q * d) would pass 2^32."""
    for isa in NATIVE_ISAS:
        full = np.full((h, w, 3), 255, np.uint8)
        assert (cpu_engine.fit_area(full, n, isa=isa) == 255).all()
    a = rand((h, w, 3), h + n)
    for isa in NATIVE_ISAS:
        np.testing.assert_array_equal(cpu_engine.fit_area(a, n, isa=isa), numpy_fit(a, n))


@native
def test_native_non_contiguous_inputs_and_channel_orders(numpy_fit):
    a = rand((250, 333, 3), 9)
    views = {"bgr": a[:, :, ::-1], "rows reversed": a[::-1], "columns reversed": a[:, ::-1],
             "strided": a[::2, ::3], "fortran": np.asfortranarray(a), "crop": a[7:200, 11:300],
             "grey": a[:, :, 1], "rgba": np.dstack([a, a[:, :, :1]])}
    for name, v in views.items():
        for n in (32, 17):
            np.testing.assert_array_equal(fit_array(v, n), numpy_fit(v, n), err_msg=name)
            if v.ndim == 3:
                np.testing.assert_array_equal(cpu_engine.fit_area(v, n), numpy_fit(v, n),
                                              err_msg=name)


@native
def test_native_camera_frames_both_orders(numpy_fit, monkeypatch):
    from pynq_bnn.camera import preprocess_frame
    frame = rand((480, 640, 3), 10)
    for order in ("RGB", "BGR"):
        got = preprocess_frame(frame, 32, order=order)
        with monkeypatch.context() as m:
            m.setattr(preprocess, "_use_native", False)
            ref = preprocess_frame(frame, 32, order=order)
        np.testing.assert_array_equal(got, ref, err_msg=order)


@native
def test_native_out_and_bad_arguments():
    a = rand((48, 64, 3), 11)
    out = np.zeros((32, 32, 3), np.uint8)
    assert cpu_engine.fit_area(a, 32, out=out) is out
    np.testing.assert_array_equal(out, cpu_engine.fit_area(a, 32))
    with pytest.raises(ValueError, match="out"):
        cpu_engine.fit_area(a, 32, out=np.zeros((32, 32, 3), np.uint16))
    with pytest.raises(ValueError, match="size"):
        cpu_engine.fit_area(a, 49)        # upscaling stays in numpy
    with pytest.raises(ValueError, match="uint8"):
        cpu_engine.fit_area(a.astype(np.float32), 8)
    with pytest.raises(ValueError, match="isa"):
        cpu_engine.fit_area(a, 8, isa="sse9")


def test_without_the_native_library_fit_array_runs_numpy(monkeypatch):
    """PYNQ_BNN_NATIVE=0: fit_area answers None and fit_array still gives the exact pixels."""
    monkeypatch.setenv("PYNQ_BNN_NATIVE", "0")
    a = rand((120, 150, 3), 12)
    assert cpu_engine.fit_area(a, 32) is None
    np.testing.assert_array_equal(fit_array(a, 32), oracle_dense(a, 32))
