"""Quantization-aware fine-tuning: the simulation rounds what INT8 rounds, leaves a plain float model,
keeps batch norm frozen, and a pruning run with QAT epochs trains through it and reports it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from distill.qat import WEIGHT_QMAX, quantization_simulated
from landmarks.models import Checkpoint, create_model, load_checkpoint, save_checkpoint


def _student() -> nn.Module:
    torch.manual_seed(0)
    model = create_model("pfld025")
    for module in model.modules():  # trained-looking batch norm: a per-channel scale and shift
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_simulation_rounds_weights_per_channel_and_activations_then_leaves_the_float_model() -> None:
    model = _student()
    x = torch.randn(4, 3, 112, 112)
    keys = set(model.state_dict())
    with torch.no_grad():
        float_out = model.forward_landmarks(x)
        with quantization_simulated(model):
            model.train()
            model.forward_landmarks(x)  # observe activation ranges
            model.eval()
            weight = model.stage4[0].expand[0].weight
            steps = weight.abs().flatten(1).amax(1) / WEIGHT_QMAX
            levels = weight / steps.view(-1, 1, 1, 1)
            assert torch.allclose(levels, levels.round(), atol=1e-3)  # on a per-output-channel grid
            assert levels.abs().max() <= WEIGHT_QMAX + 1e-3
            simulated = model.forward_landmarks(x)
            params = dict(model.named_parameters())
            assert "aux.conv1.0.weight" in params  # the pose branch is not exported: left float
            assert "conv1.0.parametrizations.weight.original" in params
        after = model.forward_landmarks(x)
    difference = (simulated - float_out).abs().mean().item()
    assert 1e-5 < difference < 0.01  # rounding shows (0.004 of the crop measured), but only as rounding
    assert set(model.state_dict()) == keys  # no parametrization or quantizer left behind
    assert torch.equal(after, float_out)  # the float weights themselves were never rounded


def test_the_simulation_is_closer_to_onnxruntimes_int8_than_the_float_model_is(tmp_path: Path) -> None:
    """The simulation rounds where onnxruntime's QDQ model rounds: its output moves from the float
    output toward the INT8 one. onnxruntime runs the QDQ graph unoptimized, i.e. the exact
    quantize-dequantize arithmetic, whatever integer kernels this CPU would fuse it into."""
    import numpy as np
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from export.onnx_export import export_onnx
    from landmarks.metadata import ArtifactMetadata

    model = _student()
    nn.init.normal_(model.fc.weight, std=0.05)  # outputs that move with the input
    x = torch.rand(8, 3, 112, 112) * 2 - 1
    with torch.no_grad():
        float_out = model.forward_landmarks(x).numpy()
        with quantization_simulated(model):
            model.train()
            model.forward_landmarks(x)  # ranges from this batch, as the calibration below
            model.eval()
            simulated = model.forward_landmarks(x).numpy()
    export_onnx(model, ArtifactMetadata(source="pfld025"), tmp_path / "float.onnx")
    quant_pre_process(str(tmp_path / "float.onnx"), str(tmp_path / "prepared.onnx"))

    class Batch(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter([{"input": x.numpy()}])

        def get_next(self):
            return next(self.feeds, None)

    quantize_static(str(tmp_path / "prepared.onnx"), str(tmp_path / "int8.onnx"), Batch(),
                    quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, extra_options={"WeightSymmetric": True})
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(tmp_path / "int8.onnx"), options, providers=["CPUExecutionProvider"])
    int8 = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0].reshape(float_out.shape)
    assert np.abs(simulated - int8).mean() < 0.8 * np.abs(float_out - int8).mean()


def test_batch_norm_is_frozen_in_training_mode() -> None:
    model = _student()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k and not k.startswith("aux.")}
    with quantization_simulated(model):
        model.train()
        model(torch.randn(4, 3, 112, 112))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_pruning_with_qat_epochs_trains_through_the_simulation_and_reports_it(tmp_path: Path) -> None:
    from distill.prune import PruneConfig, prune_checkpoint
    from landmarks.metadata import ArtifactMetadata

    model = _student()
    save_checkpoint(tmp_path / "student.pt", Checkpoint("pfld025", {"num_points": 68}, model.state_dict(),
                                                        ArtifactMetadata(source="pfld025")))
    config = PruneConfig(ratio=0.3, finetune_epochs=0, qat_epochs=1, qat_lr=1e-3, batch_size=8)
    report = prune_checkpoint(tmp_path / "student.pt", config, data="synthetic:16", val_data="synthetic:8",
                              out=tmp_path / "out", progress=False)
    assert report.qat is not None and report.qat.epochs == 1 and report.qat.seconds > 0
    assert json.loads(report.report_path.read_text())["qat"]["nme_io"] == pytest.approx(report.qat.nme_io)
    pruned = load_checkpoint(report.checkpoint).build()
    assert "parametrizations" not in " ".join(pruned.state_dict())
    reference = {k: v for k, v in model.state_dict().items() if "running" in k and not k.startswith("aux.")}
    trained = pruned.state_dict()
    unpruned_layers = [k for k, v in reference.items() if trained[k].shape == v.shape]
    assert unpruned_layers and all(torch.equal(trained[k], reference[k]) for k in unpruned_layers)  # BN frozen
    import csv

    rows = list(csv.DictReader((tmp_path / "out" / "qat_log.csv").open()))
    assert len(rows) == 1 and float(rows[0]["val_nme_io"]) == pytest.approx(report.qat.nme_io_int8_after, rel=1e-6)


def test_qat_checkpoint_fine_tunes_a_student_without_pruning_it(tmp_path: Path) -> None:
    from distill.prune import PruneConfig, qat_checkpoint
    from landmarks.errors import ConfigError
    from landmarks.metadata import ArtifactMetadata

    model = _student()
    save_checkpoint(tmp_path / "student.pt", Checkpoint("pfld025", {"num_points": 68}, model.state_dict(),
                                                        ArtifactMetadata(source="pfld025")))
    with pytest.raises(ConfigError, match="qat_epochs"):
        qat_checkpoint(tmp_path / "student.pt", PruneConfig(ratio=0.3), data="synthetic:16", out=tmp_path / "no")
    assert not (tmp_path / "no").exists()
    config = PruneConfig(ratio=0.3, qat_epochs=1, qat_lr=1e-3, batch_size=8)
    path, report = qat_checkpoint(tmp_path / "student.pt", config, data="synthetic:16", val_data="synthetic:8",
                                  out=tmp_path / "out", progress=False)
    tuned = load_checkpoint(path)
    assert tuned.arch_config["channels"] == model.channels  # nothing pruned
    assert tuned.extra["qat"]["epochs"] == 1 and report.nme_io_int8_after > 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["qat.pt", "qat_log.csv", "qat_log.json"]
    weight = "stage4.0.expand.0.weight"
    assert not torch.equal(tuned.state_dict[weight], model.state_dict()[weight])  # it trained
