"""option_docs: the option reference read from field docstrings and ``description=``, on demand."""

from __future__ import annotations

from pydantic import Field

import probe
from probe.checks.disk import DiskCheck
from probe.plugins.optiondocs import option_docs


class Base(probe.Options):
    url: str = ""
    """Where to connect."""


class Child(Base):
    timeout_ms: int = 5
    """How long to wait,
        in milliseconds."""
    retries: int = Field(default=1, description="From description=.")
    """Not this one: description= wins."""
    undocumented: bool = False

    def helper(self) -> None:
        x: int = 1
        """A docstring inside a method is not a field's."""
        del x


def test_docstrings_under_fields_inherited_ones_and_descriptions() -> None:
    assert option_docs(Child) == {
        "url": "Where to connect.",
        "timeout_ms": "How long to wait,\nin milliseconds.",
        "retries": "From description=.",
    }


def test_a_model_defined_in_a_function_and_a_nested_options_class() -> None:
    class Local(probe.Options):
        name: str = ""
        """The name."""

    assert option_docs(Local) == {"name": "The name."}
    docs = option_docs(DiskCheck.Options)
    assert docs["path"].startswith("A path on the filesystem to check")
    assert set(docs) == set(DiskCheck.Options.model_fields)


def test_runtime_models_do_not_pay_for_docstrings() -> None:
    assert Child.model_fields["url"].description is None  # read on demand by option_docs, not at class creation
