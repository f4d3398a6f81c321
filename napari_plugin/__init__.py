"""cellpoint.napari: the napari plugin (an optional extra: pip install 'cellpoint[napari]').

Two contributions, declared in napari.yaml (npe2):

- `widget.SegmentWidget`: a dock widget that segments the selected image layer with a bundled model or a
  package folder and adds the cells as a Labels layer whose features are the instance table;
- `reader.get_reader`: opens a `cellpoint segment` output folder (or one `<stem>_labels.tif` of it) as
  Labels layers with their instance tables as features.

Like the runtime it may import `cellpoint.runtime`, never training, export or torch. `reader` needs neither
napari nor Qt; `widget` needs napari and magicgui.
"""
