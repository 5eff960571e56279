"""h20.Error and its subclasses: one per runtime error code.

Every failed call of the C API raises the subclass of its code. The exception carries the code
(``code``, an int), its name (``name``, e.g. "h20ErrorInvalidValue"), the C function that failed
(``call``) and the runtime's detailed message (``message``, from h20GetLastErrorMessage or the
library's own, e.g. h20kdaGetLastErrorMessage). Codes that mean a bad argument also derive from
ValueError, an exhausted memory from MemoryError.
"""


class Error(Exception):
    """A failed H20 call."""

    code = None
    name = None

    def __init__(self, code, name, description, call, message):
        self.code = code
        self.name = name
        self.description = description
        self.call = call
        self.message = message
        text = message if message else "{}: {}".format(call, description)
        super().__init__("{} ({})".format(text, name))


class InvalidValueError(Error, ValueError):
    """h20ErrorInvalidValue: an argument is out of range."""


class MemoryAllocationError(Error, MemoryError):
    """h20ErrorMemoryAllocation: device memory or the emulator's backing budget is exhausted."""


class InitializationError(Error):
    """h20ErrorInitializationError: the runtime could not initialise (bad configuration)."""


class RuntimeUnloadingError(Error):
    """h20ErrorRuntimeUnloading: called after the runtime has shut down."""


class DeviceUnavailableError(Error):
    """h20ErrorDeviceUnavailable: the device exists but cannot be used now."""


class NoDeviceError(Error):
    """h20ErrorNoDevice: no device is visible."""


class InvalidDeviceError(Error, ValueError):
    """h20ErrorInvalidDevice: a device ordinal is out of range."""


class PeerAccessUnsupportedError(Error):
    """h20ErrorPeerAccessUnsupported: no link between the two devices."""


class InvalidResourceHandleError(Error):
    """h20ErrorInvalidResourceHandle: a stream or event handle is invalid."""


class NotReadyError(Error):
    """h20ErrorNotReady: asynchronous work has not completed yet."""


class IllegalAddressError(Error):
    """h20ErrorIllegalAddress: a kernel touched memory it may not."""


class PeerAccessAlreadyEnabledError(Error):
    """h20ErrorPeerAccessAlreadyEnabled."""


class PeerAccessNotEnabledError(Error):
    """h20ErrorPeerAccessNotEnabled."""


class HostMemoryAlreadyRegisteredError(Error):
    """h20ErrorHostMemoryAlreadyRegistered."""


class HostMemoryNotRegisteredError(Error):
    """h20ErrorHostMemoryNotRegistered."""


class LaunchFailureError(Error):
    """h20ErrorLaunchFailure: a kernel reported a fault during execution."""


class NotPermittedError(Error):
    """h20ErrorNotPermitted: the call is not allowed here."""


class NotSupportedError(Error):
    """h20ErrorNotSupported: not supported by this device or build."""


class RemoteError(Error):
    """h20ErrorRemote: another rank of a communicator failed or did not answer."""


class UnknownError(Error):
    """h20ErrorUnknown, and codes this module does not know."""


_BY_CODE = {
    1: InvalidValueError,
    2: MemoryAllocationError,
    3: InitializationError,
    4: RuntimeUnloadingError,
    46: DeviceUnavailableError,
    100: NoDeviceError,
    101: InvalidDeviceError,
    217: PeerAccessUnsupportedError,
    400: InvalidResourceHandleError,
    600: NotReadyError,
    700: IllegalAddressError,
    704: PeerAccessAlreadyEnabledError,
    705: PeerAccessNotEnabledError,
    712: HostMemoryAlreadyRegisteredError,
    713: HostMemoryNotRegisteredError,
    719: LaunchFailureError,
    800: NotPermittedError,
    801: NotSupportedError,
    990: RemoteError,
    999: UnknownError,
}


def _from_code(code, name, description, call, message):
    """The exception for a failed call (used by the extension module)."""
    cls = _BY_CODE.get(code, UnknownError)
    return cls(code, name, description, call, message)
