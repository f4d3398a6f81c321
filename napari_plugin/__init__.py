"""cellpoint.napari: the napari plugin (an optional extra: pip install 'cellpoint[napari]').

Three contributions, declared in napari.yaml (npe2):

- `widget.SegmentWidget`: a dock widget that segments the selected image layer with a bundled model or a
  package folder and adds the cells as a Labels layer whose features are the instance table;
- `correct.CorrectWidget` ("Correct cells"): a model's cells as editable clicks (and boxes, for a box +
  clicks package), counted with their annotation time and saved as the label files `cellpoint train` /
  `cellpoint finetune` read; `clicks` holds its counting and file writing, with neither napari nor Qt;
- `reader.get_reader`: opens a `cellpoint segment` output folder (or one `<stem>_labels.tif` of it) as
  Labels layers with their instance tables as features.

Like the runtime it may import `cellpoint.runtime`, never training, export or torch. `reader` needs neither
napari nor Qt; `widget` and `correct` need napari and magicgui.
"""
