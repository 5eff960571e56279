"""A DLPack producer and consumer written with ctypes, for the tests of h20's DLPack import and
export: capsules with any device, shape, strides, flags and version, a deleter that counts its
calls, and the consumer's side of the protocol (rename the capsule, call the deleter once)."""

import ctypes

KDL_CPU = 1
KDL_EXT_DEV = 12
FLAG_READ_ONLY = 1
FLOAT32 = (2, 32, 1)  # kDLFloat, bits, lanes


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class DLManagedTensor(ctypes.Structure):
    pass


class DLManagedTensorVersioned(ctypes.Structure):
    pass


class DLPackVersion(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32)]


LegacyDeleter = ctypes.CFUNCTYPE(None, ctypes.POINTER(DLManagedTensor))
VersionedDeleter = ctypes.CFUNCTYPE(None, ctypes.POINTER(DLManagedTensorVersioned))
DLManagedTensor._fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p),
                            ("deleter", LegacyDeleter)]
DLManagedTensorVersioned._fields_ = [("version", DLPackVersion), ("manager_ctx", ctypes.c_void_p),
                                     ("deleter", VersionedDeleter), ("flags", ctypes.c_uint64),
                                     ("dl_tensor", DLTensor)]

_api = ctypes.pythonapi
_api.PyCapsule_New.restype = ctypes.py_object
_api.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
_api.PyCapsule_GetName.restype = ctypes.c_char_p
_api.PyCapsule_GetName.argtypes = [ctypes.py_object]
_api.PyCapsule_GetPointer.restype = ctypes.c_void_p
_api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_api.PyCapsule_SetName.restype = ctypes.c_int
_api.PyCapsule_SetName.argtypes = [ctypes.py_object, ctypes.c_char_p]


def capsule_name(capsule):
    return _api.PyCapsule_GetName(capsule).decode()


class Producer:
    """Makes one capsule over `data` (an address) and counts the calls of its deleter. The
    capsule has no destructor of its own: the tests always hand it to a consumer."""

    def __init__(self, data, shape, device=(KDL_CPU, 0), dtype=FLOAT32, strides=None,
                 versioned=True, flags=0, version=(1, 0)):
        self.deleted = 0
        ndim = len(shape)
        self._shape = (ctypes.c_int64 * max(ndim, 1))(*shape)
        self._strides = None if strides is None else (ctypes.c_int64 * max(ndim, 1))(*strides)
        tensor = DLTensor(data, DLDevice(*device), ndim, DLDataType(*dtype), self._shape,
                          self._strides, 0)
        if versioned:
            self._deleter = VersionedDeleter(self._delete)
            self._managed = DLManagedTensorVersioned(DLPackVersion(*version), None, self._deleter,
                                                     flags, tensor)
            name = b"dltensor_versioned"
        else:
            self._deleter = LegacyDeleter(self._delete)
            self._managed = DLManagedTensor(tensor, None, self._deleter)
            name = b"dltensor"
        self.capsule = _api.PyCapsule_New(ctypes.addressof(self._managed), name, None)

    def _delete(self, _):
        self.deleted += 1


def consume(capsule):
    """What a DLPack consumer does with a capsule: reads its tensor, marks the capsule used and
    (here at once) calls the deleter, as a C consumer would: ctypes calls it with the GIL
    released. Returns (device, shape, data address, flags or None)."""
    name = capsule_name(capsule)
    ptr = _api.PyCapsule_GetPointer(capsule, name.encode())
    if name == "dltensor_versioned":
        managed = DLManagedTensorVersioned.from_address(ptr)
        flags = managed.flags
    else:
        managed = DLManagedTensor.from_address(ptr)
        flags = None
    t = managed.dl_tensor
    info = ((t.device.device_type, t.device.device_id), tuple(t.shape[i] for i in range(t.ndim)),
            t.data, flags)
    assert _api.PyCapsule_SetName(capsule, ("used_" + name).encode()) == 0
    managed.deleter(ctypes.pointer(managed))
    return info
