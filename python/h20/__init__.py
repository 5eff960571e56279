"""The H20 SDK from Python: devices, streams, events, device arrays, KDA and collectives.

A thin layer over the SDK's public C API (libh20rt, libh20kernels, libh20ccl), built as the
extension module ``h20._h20``. See docs/python.md for the whole interface.

    >>> import h20
    >>> h20.device_count()
    8
    >>> a = h20.asarray(numpy.arange(4, dtype=numpy.float32), device=1)
    >>> a.numpy()
    array([0., 1., 2., 3.], dtype=float32)
"""

from . import _h20
from ._errors import (  # noqa: F401
    DeviceUnavailableError,
    Error,
    HostMemoryAlreadyRegisteredError,
    HostMemoryNotRegisteredError,
    IllegalAddressError,
    InitializationError,
    InvalidDeviceError,
    InvalidResourceHandleError,
    InvalidValueError,
    LaunchFailureError,
    MemoryAllocationError,
    NoDeviceError,
    NotPermittedError,
    NotReadyError,
    NotSupportedError,
    PeerAccessAlreadyEnabledError,
    PeerAccessNotEnabledError,
    PeerAccessUnsupportedError,
    RemoteError,
    RuntimeUnloadingError,
    UnknownError,
)
from ._h20 import (  # noqa: F401
    Array,
    Device,
    Event,
    Stream,
    asarray,
    bfloat16,
    bool,
    current_device,
    current_stream,
    device_count,
    driver_version,
    dtype,
    empty,
    float16,
    float32,
    float64,
    from_dlpack,
    get_last_error,
    int8,
    int16,
    int32,
    int64,
    kDLCPU,
    kDLExtDev,
    runtime_version,
    set_device,
    synchronize,
    uint8,
    uint16,
    zeros,
)
from ._interop import to_torch  # noqa: F401
from . import ccl, kda  # noqa: F401,E402

from ._version import __version__  # noqa: F401,E402
