"""A fake OpenAI API for tests and benchmarks: OpenAI's real response and error shapes, behaviour chosen by the key."""

from tests.fake_openai.app import BEHAVIOURS, FakeOpenAI, behaviour_of, fake_key
from tests.fake_openai.server import FakeServer, running_fake_openai

__all__ = ["BEHAVIOURS", "FakeOpenAI", "FakeServer", "behaviour_of", "fake_key", "running_fake_openai"]
