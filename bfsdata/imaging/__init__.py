"""Pure image kernels: rank images, registration, tiling, crop and the cut recipe."""
