"""Outputs for other tools, one module each, plain functions on arrays:

- `imagej_rois.write_roi_zip`: an ImageJ/Fiji ROI set (a zip of polygon ROIs, one per cell);
- `geojson.write_geojson`: a GeoJSON FeatureCollection of cell polygons that QuPath imports;
- `ome_zarr.write_ome_zarr`: the image and its label image as one OME-Zarr (NGFF) store, for napari and
  other NGFF readers.

Outlines come from `cellpoint.runtime.polygons.instance_polygons` (pixel-corner coordinates: pixel (r, c)
covers x ∈ [c, c+1], y ∈ [r, r+1]); every writer writes atomically (a temporary file or folder, renamed)."""
