"""What an export run produces and how strictly it is checked, validated once up front."""

from __future__ import annotations

from dataclasses import dataclass

from landmarks.errors import ConfigError

FORMATS = ("onnx", "tflite")
MIN_OPSET = 17

# Parity bounds: max |landmark difference| in xy_norm units (1e-4 of a 112-pixel crop is ~0.01 px).
DEFAULT_BOUND_ONNX = 1e-4
DEFAULT_BOUND_TFLITE = 1e-3
# FP16 weights round each value to ~3 significant digits; a few thousandths of the crop is the norm.
DEFAULT_BOUND_FP16 = 5e-3


@dataclass(frozen=True)
class ExportConfig:
    """Options of one export run; a bad value raises :class:`ConfigError` here, before any work.

    ``parity_data`` is a dataset spec for ``landmarks.data.open_dataset`` (a folder, or
    ``synthetic``) or ``auto``: ``$LANDMARKS_DATA/300w/helen/testset`` when present, else synthetic.
    """

    formats: tuple[str, ...] = FORMATS
    fp16: bool = False
    opset: int = MIN_OPSET
    parity_data: str = "auto"
    parity_count: int = 64
    parity_bound_onnx: float = DEFAULT_BOUND_ONNX
    parity_bound_tflite: float = DEFAULT_BOUND_TFLITE
    parity_bound_fp16: float = DEFAULT_BOUND_FP16
    num_threads: int | None = None  # parity-check inference threads; None: the runtime's choice

    def __post_init__(self) -> None:
        formats = tuple(self.formats)
        if not formats:
            raise ConfigError(f"no export format given; choose from {', '.join(FORMATS)}")
        unknown = [f for f in formats if f not in FORMATS]
        if unknown:
            raise ConfigError(
                f"unknown export format {unknown[0]!r}; valid formats: {', '.join(FORMATS)}"
            )
        if len(set(formats)) != len(formats):
            raise ConfigError(f"export format listed twice: {','.join(formats)}")
        object.__setattr__(self, "formats", formats)
        if self.fp16 and "onnx" not in formats:
            raise ConfigError("--fp16 makes an FP16 ONNX variant; add onnx to --formats")
        if self.opset < MIN_OPSET:
            raise ConfigError(f"opset must be >= {MIN_OPSET}, got {self.opset}")
        if self.parity_count < 1:
            raise ConfigError(f"parity_count must be at least 1, got {self.parity_count}")
        for name in ("parity_bound_onnx", "parity_bound_tflite", "parity_bound_fp16"):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"{name} must be a positive number, got {value}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError(f"num_threads must be at least 1, got {self.num_threads}")

    @classmethod
    def parse_formats(cls, text: str) -> tuple[str, ...]:
        """``"onnx, tflite"`` -> ``("onnx", "tflite")``; validation happens in ``__post_init__``."""
        return tuple(part.strip().lower() for part in text.split(",") if part.strip())
