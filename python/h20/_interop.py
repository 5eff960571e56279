"""Conversions between h20 arrays and NumPy / PyTorch objects.

PyTorch (up to at least 2.x) does not know DLPack's kDLExtDev device, so an h20 array reaches
PyTorch through a host copy: the array exports a kDLCPU tensor (``__dlpack__(dl_device=(kDLCPU,
0))``) that torch.utils.dlpack.from_dlpack takes without another copy. This keeps bfloat16,
which NumPy lacks.
"""

from ._h20 import kDLCPU


def to_torch(array):
    """A PyTorch CPU tensor with a copy of the h20 array (any dtype, bfloat16 included)."""
    import torch.utils.dlpack

    return torch.utils.dlpack.from_dlpack(array.__dlpack__(dl_device=(kDLCPU, 0)))


def _is_torch(obj):
    return type(obj).__module__.startswith("torch")


def to_like(array, like):
    """The h20 array as an object of the kind of `like`: a torch tensor for a torch tensor,
    else a NumPy array (a torch tensor for bfloat16 data when torch is importable)."""
    if _is_torch(like):
        return to_torch(array)
    if array.dtype.name == "bfloat16":
        try:
            return to_torch(array)
        except ImportError:
            return array
    return array.numpy()


def copy_back(array, target):
    """Copies the h20 array's data into `target` (a NumPy array or a torch tensor) in place."""
    if _is_torch(target):
        target.copy_(to_torch(array))
        return
    if array.dtype.name == "bfloat16":
        raise TypeError("copy_back: NumPy has no bfloat16 to copy a state into")
    target[...] = array.numpy()
