"""A checkpoint is data: a .pt file whose pickle would run code is refused (weights_only loading), by
`cellpoint export`, `--init-from` (both through load_checkpoint) and the scale model's loader."""
import pytest

torch = pytest.importorskip("torch")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling this would create the marker file
        return (open, (str(self.marker), "w"))


def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    from cellpoint.training.checkpoint import CheckpointError, load_checkpoint
    from cellpoint.training.scale_model import load_scale_checkpoint
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "cellpoint-checkpoint/2", "payload": _Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="evil.pt: not a readable cellpoint checkpoint"):
        load_checkpoint(path)
    with pytest.raises(Exception):
        load_scale_checkpoint(path)
    assert not marker.exists()
