"""DLPack in both directions, with NumPy and PyTorch, and the lifetime of exported memory.

PyTorch 1.13 and NumPy 1.24 know neither kDLExtDev nor the dl_device argument, so they take h20
data as a host copy: array.__dlpack__(dl_device=(kDLCPU, 0)) (h20.to_torch does that).
"""

import gc

import numpy as np
import pytest
import torch  # Debian python3-torch, which scripts/install-deps.sh installs
import torch.utils.dlpack

import h20
from dlpack_ctypes import FLAG_READ_ONLY, KDL_CPU, KDL_EXT_DEV, Producer, capsule_name, consume

TORCH_TYPES = [
    (torch.float32, h20.float32),
    (torch.bfloat16, h20.bfloat16),
    (torch.float16, h20.float16),
    (torch.float64, h20.float64),
    (torch.int32, h20.int32),
    (torch.int64, h20.int64),
    (torch.int8, h20.int8),
    (torch.uint8, h20.uint8),
]


class HostExport:
    """What NumPy 1.24's from_dlpack needs: a producer that exports on the host."""

    def __init__(self, array):
        self.array = array

    def __dlpack__(self, stream=None):
        return self.array.__dlpack__(dl_device=(h20.kDLCPU, 0))

    def __dlpack_device__(self):
        return (h20.kDLCPU, 0)


def test_dlpack_device_is_the_extension_device_and_chip():
    a = h20.zeros(3, device=6)
    assert a.__dlpack_device__() == (h20.kDLExtDev, 6) == (12, 6)


@pytest.mark.parametrize("torch_type,h20_type", TORCH_TYPES)
def test_torch_round_trip_through_dlpack(torch_type, h20_type):
    t = (torch.arange(24) % 11 - 3).to(torch_type).reshape(2, 3, 4)
    a = h20.from_dlpack(t, device=1)
    assert a.dtype == h20_type and a.shape == (2, 3, 4) and a.device.index == 1
    back = h20.to_torch(a)
    assert back.dtype == torch_type
    assert torch.equal(back, t)
    # The capsule itself is accepted by PyTorch 1.13's from_dlpack.
    cap = a.__dlpack__(dl_device=(h20.kDLCPU, 0), copy=True)
    assert torch.equal(torch.utils.dlpack.from_dlpack(cap), t)


def test_torch_non_contiguous_and_capsule_inputs():
    t = torch.arange(30, dtype=torch.float32).reshape(5, 6).t()  # a transposed view
    np.testing.assert_array_equal(h20.asarray(t).numpy(), t.numpy())
    cap = torch.utils.dlpack.to_dlpack(torch.ones(4, dtype=torch.int64))
    np.testing.assert_array_equal(h20.from_dlpack(cap).numpy(), np.ones(4))
    with pytest.raises(RuntimeError):  # tensors requiring grad are not exported by torch
        h20.asarray(torch.ones(2, requires_grad=True))


def test_numpy_round_trip_through_dlpack():
    host = np.linspace(-1, 1, 35, dtype=np.float32).reshape(5, 7)
    a = h20.from_dlpack(host)
    assert a.device == h20.current_device()
    back = np.from_dlpack(HostExport(a))
    np.testing.assert_array_equal(back, host)


def test_from_dlpack_of_device_data_uses_it_in_place():
    a = h20.asarray(np.arange(8, dtype=np.int32), device=3)
    assert h20.from_dlpack(a) is a
    b = h20.from_dlpack(a.__dlpack__())
    assert b.data_ptr == a.data_ptr and b.device.index == 3
    c = h20.from_dlpack(a.__dlpack__(max_version=(1, 0)))
    assert c.data_ptr == a.data_ptr
    moved = h20.from_dlpack(a, device=4)
    assert moved.device.index == 4 and moved.data_ptr != a.data_ptr
    copied = h20.from_dlpack(a, copy=True)
    assert copied.data_ptr != a.data_ptr
    np.testing.assert_array_equal(copied.numpy(), np.arange(8))
    with pytest.raises(BufferError, match="copy=False"):
        h20.from_dlpack(np.ones(2), copy=False)


def test_copy_requests_of_the_protocol_are_honoured():
    a = h20.asarray(np.arange(6, dtype=np.float32), device=2)
    with pytest.raises(BufferError, match="copy=False"):
        a.__dlpack__(dl_device=(h20.kDLCPU, 0), copy=False)
    with pytest.raises(BufferError, match="cannot export"):
        a.__dlpack__(dl_device=(2, 0))  # kDLCUDA
    with pytest.raises(BufferError, match="cannot export"):
        a.__dlpack__(dl_device=(h20.kDLExtDev, 5))  # another chip
    same = h20.from_dlpack(a.__dlpack__(dl_device=(h20.kDLExtDev, 2)))
    assert same.data_ptr == a.data_ptr
    copy = h20.from_dlpack(a.__dlpack__(copy=True, max_version=(1, 0)))
    assert copy.data_ptr != a.data_ptr
    np.testing.assert_array_equal(copy.numpy(), a.numpy())
    s = h20.Stream(device=2)
    h20.from_dlpack(a.__dlpack__(stream=s.handle))  # the consumer's stream waits
    h20.from_dlpack(a.__dlpack__(stream=-1))


def test_bad_export_arguments_raise_type_or_value_error():
    a = h20.zeros(4, device=1)
    with pytest.raises(TypeError, match="max_version"):
        a.__dlpack__(max_version=1)
    with pytest.raises(TypeError, match="dl_device"):
        a.__dlpack__(dl_device=(h20.kDLCPU,))
    with pytest.raises(TypeError, match="dl_device"):
        a.__dlpack__(dl_device=("cpu", 0))
    with pytest.raises(ValueError, match="not a stream handle"):
        a.__dlpack__(stream=-5)
    with pytest.raises(h20.InvalidResourceHandleError):
        a.__dlpack__(stream=12345)  # not a live stream: the runtime's check


def test_producer_deleted_while_a_consumer_holds_the_memory():
    dev = h20.Device(5)
    gc.collect()
    base = dev.memory_used()
    a = h20.asarray(np.arange(1 << 20, dtype=np.float32), device=dev)
    assert dev.memory_used() >= base + (4 << 20)
    cap = a.__dlpack__()
    del a
    gc.collect()
    assert dev.memory_used() >= base + (4 << 20)  # the capsule holds the allocation
    consumer = h20.from_dlpack(cap)
    del cap
    gc.collect()
    filler = h20.zeros(1 << 20, device=dev)  # would reuse the memory were it freed
    np.testing.assert_array_equal(consumer[:5].numpy(), [0, 1, 2, 3, 4])
    assert consumer.numpy()[-1] == (1 << 20) - 1
    del consumer, filler
    gc.collect()
    assert dev.memory_used() == base


def test_unconsumed_capsule_frees_its_memory():
    dev = h20.Device(6)
    gc.collect()
    base = dev.memory_used()
    cap = h20.zeros(1 << 18, device=dev).__dlpack__(max_version=(1, 0))
    assert dev.memory_used() > base
    del cap
    gc.collect()
    assert dev.memory_used() == base


def test_torch_tensor_outlives_its_h20_source():
    a = h20.asarray(np.arange(10, dtype=np.float32))
    t = h20.to_torch(a)
    del a
    gc.collect()
    assert torch.equal(t, torch.arange(10, dtype=torch.float32))


def test_producer_on_the_host_is_copied_and_other_objects_are_refused():
    class HostProducer:
        def __dlpack__(self, stream=None):
            return torch.utils.dlpack.to_dlpack(torch.ones(2))

        def __dlpack_device__(self):
            return (h20.kDLCPU, 0)

    np.testing.assert_array_equal(h20.from_dlpack(HostProducer()).numpy(), [1, 1])
    with pytest.raises(TypeError, match="cannot convert"):
        h20.from_dlpack(object())


# ---- the protocol's rules, with a producer and a consumer written with ctypes ----------------

@pytest.mark.parametrize("versioned", [False, True])
def test_import_marks_the_capsule_used_and_calls_its_deleter_once(versioned):
    host = np.arange(6, dtype=np.float32)
    p = Producer(host.ctypes.data, (2, 3), versioned=versioned)
    a = h20.from_dlpack(p.capsule, device=1)  # host data: copied, the tensor released at once
    assert capsule_name(p.capsule) == ("used_dltensor_versioned" if versioned else "used_dltensor")
    assert p.deleted == 1
    np.testing.assert_array_equal(a.numpy(), host.reshape(2, 3))
    with pytest.raises(TypeError, match="DLPack capsule"):
        h20.from_dlpack(p.capsule)  # a used capsule cannot be consumed again
    assert p.deleted == 1


@pytest.mark.parametrize("versioned", [False, True])
def test_device_tensor_of_another_producer_is_held_until_the_last_array_goes(versioned):
    src = h20.asarray(np.arange(8, dtype=np.float32), device=3)
    p = Producer(src.data_ptr + 8, (2, 3), device=(KDL_EXT_DEV, 3), versioned=versioned)
    a = h20.from_dlpack(p.capsule)
    assert a.data_ptr == src.data_ptr + 8 and a.device.index == 3 and a.shape == (2, 3)
    view = a[1]
    del a
    gc.collect()
    assert p.deleted == 0  # the slice still uses the producer's memory
    np.testing.assert_array_equal(view.numpy(), [5, 6, 7])
    del view
    gc.collect()
    assert p.deleted == 1


def test_read_only_device_tensor_is_copied_not_aliased():
    src = h20.asarray(np.arange(4, dtype=np.float32), device=2)
    p = Producer(src.data_ptr, (4,), device=(KDL_EXT_DEV, 2), flags=FLAG_READ_ONLY)
    a = h20.from_dlpack(p.capsule)
    assert a.data_ptr != src.data_ptr
    np.testing.assert_array_equal(a.numpy(), np.arange(4))
    p = Producer(src.data_ptr, (4,), device=(KDL_EXT_DEV, 2), flags=FLAG_READ_ONLY)
    with pytest.raises(BufferError, match="read-only"):
        h20.from_dlpack(p.capsule, copy=False)
    gc.collect()
    assert p.deleted == 1


@pytest.mark.parametrize("shape,device,strides,offset,message", [
    ((5,), 2, None, 0, "not inside an allocation"),        # past the end of the allocation
    ((4,), 2, None, 4, "not inside an allocation"),        # starts inside, ends past it
    ((4,), 3, None, 0, "not inside an allocation"),        # another device's memory
    ((0,), 99, None, 0, "not a visible H20 device"),       # even when empty
    ((2, 2), 2, (1, 2), 0, "not contiguous"),
    ((2,), 2, (1 << 62,), 0, "overflows"),
])
def test_bad_device_tensors_are_refused_and_released(shape, device, strides, offset, message):
    src = h20.asarray(np.arange(4, dtype=np.float32), device=2)
    p = Producer(src.data_ptr + offset, shape, device=(KDL_EXT_DEV, device), strides=strides)
    with pytest.raises((BufferError, ValueError), match=message):
        h20.from_dlpack(p.capsule)
    gc.collect()
    assert p.deleted == 1  # consumed, so released by the consumer


def test_capsule_of_a_newer_major_version_is_left_to_its_producer():
    host = np.zeros(2, np.float32)
    p = Producer(host.ctypes.data, (2,), version=(2, 0))
    with pytest.raises(BufferError, match="newer"):
        h20.from_dlpack(p.capsule)
    assert capsule_name(p.capsule) == "dltensor_versioned" and p.deleted == 0


def test_unsupported_element_type_is_a_type_error():
    host = np.zeros(2, np.complex64)
    p = Producer(host.ctypes.data, (2,), dtype=(5, 64, 1))  # kDLComplex
    with pytest.raises(TypeError, match="unsupported DLPack element type"):
        h20.from_dlpack(p.capsule)
    gc.collect()
    assert p.deleted == 1


def test_exported_capsules_as_a_consumer_sees_them():
    dev = h20.Device(4)
    gc.collect()
    base = dev.memory_used()
    a = h20.asarray(np.arange(1 << 16, dtype=np.float32), device=dev)
    device, shape, data, flags = consume(a.__dlpack__())
    assert (device, shape, data, flags) == ((KDL_EXT_DEV, 4), (1 << 16,), a.data_ptr, None)
    device, shape, data, flags = consume(a.__dlpack__(max_version=(1, 0)))
    assert (device, data, flags) == ((KDL_EXT_DEV, 4), a.data_ptr, 0)
    _, _, data, flags = consume(a.__dlpack__(max_version=(1, 0), copy=True))
    assert data != a.data_ptr and flags == 2  # DLPACK_FLAG_BITMASK_IS_COPIED
    device, _, _, flags = consume(a[2:].__dlpack__(max_version=(1, 0), dl_device=(KDL_CPU, 0)))
    assert device == (KDL_CPU, 0) and flags == 2
    held = a.__dlpack__()  # not consumed yet
    del a
    gc.collect()
    assert dev.memory_used() >= base + (4 << 16)
    consume(held)  # the consumer's deleter call releases the last reference
    assert dev.memory_used() == base
