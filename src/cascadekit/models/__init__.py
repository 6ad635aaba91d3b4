"""Models: live Hugging Face scoring and recorded replays."""

from cascadekit.models.cached import CachedModel
from cascadekit.models.hf import HFChoiceModel
from cascadekit.models.recorded import RecordedModel

__all__ = ["CachedModel", "HFChoiceModel", "RecordedModel"]
