"""h20 arrays: creation, copies to and from the host, types, views, slicing, validation."""

import numpy as np
import pytest

import h20

NUMPY_TYPES = [
    ("float16", np.float16),
    ("float32", np.float32),
    ("float64", np.float64),
    ("int8", np.int8),
    ("int16", np.int16),
    ("int32", np.int32),
    ("int64", np.int64),
    ("uint8", np.uint8),
    ("uint16", np.uint16),
    ("bool", np.bool_),
]


@pytest.mark.parametrize("name,np_type", NUMPY_TYPES)
def test_numpy_round_trip_keeps_values_and_type(name, np_type):
    host = (np.arange(60) % 7).astype(np_type).reshape(3, 4, 5)
    a = h20.asarray(host, device=2)
    assert a.dtype == getattr(h20, name)
    assert a.dtype.name == name
    assert a.shape == (3, 4, 5)
    assert a.ndim == 3 and a.size == 60 and len(a) == 3
    assert a.itemsize == host.itemsize
    assert a.nbytes == host.nbytes
    assert a.strides == host.strides
    assert a.device == h20.Device(2)
    back = a.numpy()
    assert back.dtype == host.dtype
    np.testing.assert_array_equal(back, host)
    np.testing.assert_array_equal(a.copy_to_host(), host)
    np.testing.assert_array_equal(np.asarray(a), host)
    np.testing.assert_array_equal(a.__array__(copy=True), host)
    with pytest.raises(ValueError, match="copy=False"):
        a.__array__(copy=False)  # NumPy 2's request for no copy cannot be met


def test_empty_and_zeros():
    e = h20.empty((2, 3), dtype=h20.int32)
    assert e.shape == (2, 3) and e.dtype == h20.int32
    z = h20.zeros(5, "float64", device=h20.Device(1))
    assert z.device.index == 1
    np.testing.assert_array_equal(z.numpy(), np.zeros(5))
    assert h20.zeros((0, 4)).numpy().shape == (0, 4)
    assert h20.zeros(()).numpy().shape == ()


@pytest.mark.parametrize("spec", [h20.bfloat16, "bfloat16", "torch.bfloat16", np.float32,
                                  np.dtype("int64"), float])
def test_dtype_arguments_take_names_and_numpy_types(spec):
    assert h20.empty(2, spec).dtype.name in ("bfloat16", "float32", "int64", "float64")


def test_bad_dtype_and_shape_are_refused():
    with pytest.raises(TypeError, match="unsupported dtype"):
        h20.empty(3, "complex64")
    with pytest.raises(ValueError, match="negative dimension"):
        h20.zeros((2, -1))
    with pytest.raises(TypeError, match="shape"):
        h20.empty("3")
    with pytest.raises(ValueError, match="too large"):
        h20.empty((1 << 40, 1 << 40))
    with pytest.raises(ValueError, match="too large"):
        h20.empty((1 << 62, 4), h20.uint8)  # 2^64 bytes: the product overflows 64 bits
    with pytest.raises(ValueError, match="64 bits"):
        h20.empty(1 << 70)
    with pytest.raises(ValueError, match="64 bits"):
        h20.zeros((2, -(1 << 64)))
    with pytest.raises(TypeError, match="expected an int"):
        h20.empty((2, 2.0))
    with pytest.raises(TypeError, match="expected an int"):
        h20.empty((True, 2))


def test_allocation_past_device_memory_raises_memory_allocation_error():
    with pytest.raises(h20.MemoryAllocationError) as e:
        h20.empty(200 << 30, h20.uint8)
    assert isinstance(e.value, MemoryError)
    assert e.value.code == 2
    assert "h20Malloc" in e.value.call


def test_bfloat16_conversion_rounds_to_nearest_even_and_numpy_refuses_it():
    x = np.array([1.0, 1.00390625, 1.01171875, -2.5, 3.0e38], dtype=np.float32)
    b = h20.asarray(x, dtype=h20.bfloat16)
    assert b.dtype == h20.bfloat16
    bits = b.view(h20.uint16).numpy()
    assert bits.dtype == np.uint16
    assert list(bits[:4]) == [0x3F80, 0x3F80, 0x3F82, 0xC020]  # ties go to even
    back = h20.asarray(b, dtype=h20.float32).numpy()
    np.testing.assert_array_equal(back[:4], [1.0, 1.0, 1.015625, -2.5])
    with pytest.raises(TypeError, match="bfloat16"):
        b.numpy()


def test_float16_conversion_matches_numpy():
    x = np.array([0.1, -65504.0, 1e-6, 3.0e-5, 2.0 ** -24, -0.0, 1.0e5], dtype=np.float32)
    h = h20.asarray(x, dtype="float16").numpy()
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(h, x.astype(np.float16))


def test_asarray_of_lists_scalars_and_non_contiguous_views():
    np.testing.assert_array_equal(h20.asarray([[1, 2], [3, 4]]).numpy(), [[1, 2], [3, 4]])
    assert h20.asarray(2.5).numpy() == 2.5
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    view = base[::2, 1::2]  # strided
    np.testing.assert_array_equal(h20.asarray(view).numpy(), view)
    ro = np.arange(5, dtype=np.int32)
    ro.flags.writeable = False  # NumPy exports read-only arrays through the buffer protocol only
    np.testing.assert_array_equal(h20.asarray(ro).numpy(), ro)
    with pytest.raises(TypeError):
        h20.asarray(object())


def test_asarray_returns_the_same_array_unless_a_copy_is_needed():
    a = h20.asarray(np.ones(4, np.float32), device=1)
    assert h20.asarray(a) is a
    assert h20.asarray(a, device=1) is a
    c = h20.asarray(a, copy=True)
    assert c is not a and c.data_ptr != a.data_ptr
    moved = h20.asarray(a, device=3)
    assert moved.device.index == 3
    np.testing.assert_array_equal(moved.numpy(), np.ones(4))
    with pytest.raises(ValueError, match="copy=False"):
        h20.asarray(np.ones(2), copy=False)


def test_slicing_takes_contiguous_ranges_without_copying():
    host = np.arange(60, dtype=np.int32).reshape(5, 3, 4)
    a = h20.asarray(host)
    np.testing.assert_array_equal(a[1].numpy(), host[1])
    np.testing.assert_array_equal(a[1:4].numpy(), host[1:4])
    np.testing.assert_array_equal(a[-1].numpy(), host[-1])
    np.testing.assert_array_equal(a[2, 1].numpy(), host[2, 1])
    np.testing.assert_array_equal(a[2, 1:3].numpy(), host[2, 1:3])
    np.testing.assert_array_equal(a[1:3, :, :].numpy(), host[1:3])
    assert a[1:3].data_ptr == a.data_ptr + host[1:3].ctypes.data - host.ctypes.data
    assert a[4:2].shape == (0, 3, 4)
    with pytest.raises(IndexError, match="step"):
        a[::2]
    np.testing.assert_array_equal(a[1, 1:2, 1:3].numpy(), host[1, 1:2, 1:3])
    np.testing.assert_array_equal(a[0:1, 2, 1:3].numpy(), host[0:1, 2, 1:3])
    assert a[:, 0:0].shape == (5, 0, 4)  # empty: any range will do
    # Anything that is not one contiguous range (a column, a block) is refused, never returned
    # as the wrong elements.
    for idx in [(slice(1, 3), 1), (slice(None), 0), (slice(None), slice(1, 3)),
                (1, slice(None), 2), (slice(0, 2), slice(None), slice(0, 1))]:
        with pytest.raises(IndexError, match="contiguous"):
            a[idx]
    with pytest.raises(IndexError):
        a[1 << 70]
    with pytest.raises(IndexError, match="out of bounds"):
        a[5]
    with pytest.raises(IndexError, match="too many"):
        a[0, 0, 0, 0]


def test_a_slice_keeps_its_parents_memory_alive():
    a = h20.asarray(np.arange(100, dtype=np.float32))
    s = a[10:20]
    del a
    np.testing.assert_array_equal(s.numpy(), np.arange(10, 20, dtype=np.float32))


def test_reshape_view_copy_from_and_to():
    a = h20.asarray(np.arange(12, dtype=np.float32))
    r = a.reshape(3, -1)
    assert r.shape == (3, 4) and r.data_ptr == a.data_ptr
    assert a.reshape((2, 6)).shape == (2, 6)
    with pytest.raises(ValueError):
        a.reshape(5, -1)
    with pytest.raises(ValueError, match="too large"):
        a.reshape(1 << 62, 1 << 62, -1)
    with pytest.raises(ValueError, match="only one"):
        a.reshape(-1, -1)
    with pytest.raises(ValueError, match="negative"):
        a.reshape(-2, 6)
    assert h20.zeros((0, 3)).reshape(3, 0).shape == (3, 0)
    with pytest.raises(ValueError):
        a.view(h20.float64)
    assert a.view(h20.int32).dtype == h20.int32
    r.copy_from(np.ones((3, 4), dtype=np.float64))  # converted to float32
    np.testing.assert_array_equal(a.numpy(), np.ones(12))
    with pytest.raises(ValueError, match="shape"):
        r.copy_from(np.ones(12))
    b = a.to(5)
    assert b.device.index == 5
    np.testing.assert_array_equal(b.numpy(), np.ones(12))
    assert a.to(a.device) is a


def test_repr_names_shape_type_and_device():
    assert repr(h20.zeros((2, 3), h20.bfloat16, device=4)) == (
        "h20.Array(shape=(2, 3), dtype=bfloat16, device=4)")
    assert repr(h20.float32) == "h20.float32"
