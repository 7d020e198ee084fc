"""The array types every module shares: numbers as float64, indices and outcomes as intp,
masks as bool."""

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]
