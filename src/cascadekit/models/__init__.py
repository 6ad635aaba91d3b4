"""Models: live Hugging Face scoring and recorded replays."""

from cascadekit.models.cached import CachedModel
from cascadekit.models.hf import HFChoiceModel, column_major_linears
from cascadekit.models.recorded import RecordedModel

__all__ = ["CachedModel", "HFChoiceModel", "RecordedModel", "column_major_linears"]
