"""Error mapping: every failed C call raises the h20.Error subclass of its code."""

import numpy as np
import pytest

import h20


def test_error_carries_code_name_call_and_runtime_message():
    with pytest.raises(h20.Error) as e:
        h20.Device(42)
    err = e.value
    assert type(err) is h20.InvalidDeviceError
    assert err.code == 101
    assert err.name == "h20ErrorInvalidDevice"
    assert "42" in err.message
    assert str(err).endswith("(h20ErrorInvalidDevice)")


def test_runtime_message_of_a_refused_call_is_passed_on():
    a, b = h20.Event(timing=False), h20.Event()
    a.record()
    b.record()
    b.synchronize()
    with pytest.raises(h20.InvalidResourceHandleError) as e:
        a.elapsed_time(b)
    assert e.value.call == "h20EventElapsedTime"
    assert "h20EventElapsedTime" in e.value.message  # the runtime's own message
    assert "DisableTiming" in e.value.message


def test_every_code_of_the_runtime_has_a_class():
    from h20 import _errors

    codes = [1, 2, 3, 4, 46, 100, 101, 217, 400, 600, 700, 704, 705, 712, 713, 719, 800, 801,
             990, 999]
    for code in codes:
        exc = _errors._from_code(code, "name", "description", "call", "")
        assert isinstance(exc, h20.Error)
        assert exc.code == code
        assert type(exc) is not h20.UnknownError or code == 999
    assert type(_errors._from_code(12345, "x", "d", "c", "")) is h20.UnknownError
    assert issubclass(h20.InvalidValueError, ValueError)
    assert issubclass(h20.MemoryAllocationError, MemoryError)


def test_device_fault_is_reported_at_synchronisation_and_cleared_by_reset():
    # A decode state slot outside the pool is found by the kernel: h20ErrorLaunchFailure at the
    # next synchronisation, sticky for that device until h20DeviceReset.
    dev = h20.Device(7)
    n, h, d = 1, 1, 16
    f32 = np.float32
    args = dict(
        q=h20.zeros((n, 1, h, d), device=dev), k=h20.zeros((n, 1, h, d), device=dev),
        v=h20.zeros((n, 1, h, d), device=dev), g=h20.zeros((n, 1, h, d), device=dev),
        beta=h20.zeros((n, 1, h), device=dev), A_log=h20.zeros(h, device=dev),
        state=h20.zeros((2, h, d, d), device=dev),
        state_slots=h20.asarray(np.array([5], np.int32), device=dev))
    h20.kda.decode(**args)
    with pytest.raises(h20.LaunchFailureError) as e:
        dev.synchronize()
    assert e.value.code == 719
    assert "stateSlots[0] = 5" in e.value.message
    with pytest.raises(ValueError, match="still use"):
        dev.reset()  # refused while arrays live on the device
    del args
    dev.reset()
    dev.synchronize()
    np.testing.assert_array_equal(h20.zeros(2, device=dev).numpy(), np.zeros(2, f32))


def test_argument_errors_raise_value_or_type_error():
    with pytest.raises(TypeError):
        h20.zeros(3, device="cpu")
    with pytest.raises(TypeError):
        h20.Stream().wait_event(None)
