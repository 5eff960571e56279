"""Devices, streams and events."""

import gc

import numpy as np
import pytest

import h20


def test_device_count_matches_emulated_chips(device_count):
    assert isinstance(device_count, int)
    assert device_count == 8  # the emulator's default (H20_EMU_DEVICES unset in the tests)


def test_device_properties_are_reported():
    d = h20.Device(1)
    assert d.index == 1
    assert "H20" in d.name
    assert d.total_memory == d.properties["total_memory"] > 0
    props = d.properties
    assert props["emulated"] is True
    assert props["multi_processor_count"] == d.multi_processor_count > 0
    assert len(props["max_grid_size"]) == 3
    assert d.compute_capability == props["compute_capability"]
    assert d.pci_bus_id.count(":") == 2
    assert repr(d) == "h20.Device(1)"
    assert d == h20.Device(1) and d != h20.Device(2)
    assert hash(d) == hash(h20.Device(1))


def test_set_current_changes_this_threads_device():
    before = h20.current_device()
    try:
        h20.Device(3).set_current()
        assert h20.current_device() == h20.Device(3)
        assert h20.empty(4).device == h20.Device(3)
        h20.set_device(2)
        assert h20.current_device().index == 2
    finally:
        before.set_current()


@pytest.mark.parametrize("bad", [-1, 8, 1000])
def test_device_ordinal_out_of_range_raises_invalid_device(bad):
    with pytest.raises(h20.InvalidDeviceError) as e:
        h20.Device(bad)
    assert isinstance(e.value, ValueError)
    assert e.value.code == 101
    assert str(bad) in str(e.value)


def test_device_rejects_non_integer_ordinal():
    with pytest.raises(TypeError):
        h20.Device("0")
    with pytest.raises(TypeError):
        h20.Device(True)
    with pytest.raises(ValueError, match="64 bits"):
        h20.Device(1 << 70)
    with pytest.raises(h20.InvalidDeviceError):
        h20.Stream(device=1 << 40)


def test_memory_info_and_memory_used_follow_allocations():
    d = h20.Device(4)
    gc.collect()
    used = d.memory_used()
    a = h20.empty((1 << 20,), h20.float32, device=d)
    assert d.memory_used() >= used + (4 << 20)
    free, total = d.memory_info()
    assert 0 < free <= total
    del a
    assert d.memory_used() == used


def test_stream_context_makes_stream_and_device_current():
    s = h20.Stream(device=5)
    before = h20.current_device()
    assert h20.current_stream() is None
    with s as entered:
        assert entered is s
        assert h20.current_stream() is s
        assert h20.current_device() == h20.Device(5)
        a = h20.zeros(16)
        assert a.device == h20.Device(5)
        inner = h20.Stream(device=6)
        with inner:
            assert h20.current_stream() is inner
            assert h20.current_device().index == 6
        assert h20.current_stream() is s
    assert h20.current_stream() is None
    assert h20.current_device() == before


def test_stream_synchronize_and_query():
    s = h20.Stream(non_blocking=True, priority=-1)
    assert s.non_blocking is True
    assert isinstance(s.priority, int)
    with s:
        a = h20.asarray(np.arange(1 << 16, dtype=np.float32))
        b = a.copy()
    s.synchronize()
    assert s.query() is True
    np.testing.assert_array_equal(b.numpy(), np.arange(1 << 16, dtype=np.float32))


def test_events_time_work_and_order_streams():
    producer, consumer = h20.Stream(device=0), h20.Stream(device=0)
    start, end = h20.Event(), h20.Event()
    with producer:
        start.record()
        a = h20.asarray(np.full(1 << 18, 3.0, dtype=np.float32))
        end.record()
    consumer.wait_event(end)
    end.synchronize()
    assert end.query() is True
    ms = start.elapsed_time(end)
    assert ms >= 0.0
    ev = consumer.record_event()
    assert isinstance(ev, h20.Event)
    ev.synchronize()
    np.testing.assert_array_equal(a.numpy()[:4], [3.0] * 4)


def test_event_without_timing_refuses_elapsed_time():
    a, b = h20.Event(timing=False), h20.Event(timing=False)
    a.record()
    b.record()
    b.synchronize()
    with pytest.raises(h20.InvalidResourceHandleError) as e:
        a.elapsed_time(b)
    assert e.value.call == "h20EventElapsedTime"
    assert e.value.name == "h20ErrorInvalidResourceHandle"


def test_event_records_on_its_own_devices_legacy_stream():
    ev = h20.Event(device=7)
    h20.Device(0).set_current()
    ev.record()  # the legacy stream of device 7, not of the current device 0
    ev.synchronize()
    assert ev.device == h20.Device(7)


def test_stream_on_another_device_is_refused_for_event_record():
    ev = h20.Event(device=1)
    s = h20.Stream(device=2)
    with pytest.raises(h20.InvalidResourceHandleError):
        ev.record(s)


def test_synchronize_and_versions():
    h20.synchronize()
    h20.synchronize(3)
    h20.Device(2).synchronize()
    assert h20.runtime_version() == 10  # 0.1.0
    assert h20.driver_version() > 0
    assert h20.__version__ == "0.1.0"
