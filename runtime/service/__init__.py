"""`cellpoint serve`: an HTTP service that segments frames sent by acquisition software (docs/service.md).

- `config`: the service's limits and token (`ServiceConfig`).
- `frames`: a request body (TIFF, PNG or raw pixels) → a numpy image, or a `FrameError` saying why not.
- `responses`: a segmentation → the label image as TIFF, or the instance table with outlines as JSON.
- `app`: the routes (starlette), admission (a bounded queue) and the worker threads.

Only `app` imports the server library (the `serve` extra); the other modules need numpy, tifffile and OpenCV
only, so they can be used and tested without it."""
