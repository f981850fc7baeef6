"""check_probe: a broken probe contract fails with a message naming what broke."""

from __future__ import annotations

import attrs
import pytest
import torch

from tel_core.probes.contract import Probe, ProbeOptions, Report
from tel_core.registry.registry import Component, Source
from tel_core.testing import ConformanceError, check_probe

from .conftest import ROOT


@attrs.frozen(kw_only=True)
class Flaw(ProbeOptions):
    #: Which part of the contract to break ("" for none).
    flaw: str = ""


class Flawed(Probe):
    """Counts its steps and reports the first parameter's gradient norm."""

    def __init__(self, options: Flaw, ctx) -> None:
        self.flaw = options.flaw
        self.model = ctx.model
        self.seen = 0
        self.hook = None

    def after_backward(self, step: int) -> Report:
        weight = next(self.model.parameters())
        if self.flaw == "scale_grads":
            weight.grad.mul_(2)
        if self.flaw == "hook":
            self.model.blocks[0].register_forward_hook(lambda *args: None)
        if self.flaw == "random":
            torch.rand(1)
        if self.flaw == "tensor":
            return Report(scalars={"flawed/norm": weight.grad.norm()})
        return Report(scalars={"flawed/norm": weight.grad.norm().item()})

    def after_update(self, update) -> Report | None:
        self.seen += 1
        if self.flaw == "touch_weights":
            with torch.no_grad():
                next(self.model.parameters()).add_(1e-3)
        if self.flaw == "bad_name":
            return Report(scalars={"flawed/../seen": self.seen})
        return Report(scalars={"flawed/seen": self.seen})

    def evaluate(self, batch) -> Report | None:
        if self.flaw == "train_mode":
            batch.model.train()
        if self.flaw == "wrong_type":
            return {"flawed/x": 1.0}  # type: ignore[return-value]
        if self.flaw == "float_image":
            return Report(images={"flawed/image": torch.zeros(4, 4, 3).numpy()})
        return None

    def state_dict(self):
        if self.flaw == "object_state":
            return {"seen": object()}
        return {} if self.flaw == "forgets" else {"seen": self.seen}

    def load_state_dict(self, state):
        self.seen = state.get("seen", 0)


def component(factory=Flawed, options=Flaw) -> Component:
    source = Source(plugin="test", module=__name__)
    return Component(kind="probe", name="flawed", factory=factory, options=options, source=source)


def test_a_correct_probe_passes():
    check_probe(component())
    check_probe(component(), {"every": 7}, model={"attention": "eager", "n_layers": 1})


@pytest.mark.parametrize(
    ("flaw", "message"),
    [
        ("scale_grads", "after_backward changed the gradients"),
        ("hook", "after_backward left a hook installed"),
        ("random", "after_backward drew from torch's random generator"),
        ("tensor", "after_backward: scalar 'flawed/norm' is a Tensor, not an int or float"),
        ("touch_weights", "after_update changed the model's parameters"),
        ("bad_name", "after_update: scalars: invalid name 'flawed/../seen'"),
        ("train_mode", "evaluate changed the model's mode (it was eval)"),
        ("wrong_type", "evaluate returned a dict, not a Report or None"),
        ("float_image", "image 'flawed/image': an image must be a uint8 numpy array"),
        ("object_state", "state_dict() does not survive a weights_only checkpoint"),
        ("forgets", "after load_state_dict, steps 3 and 4 differ from a run never stopped"),
    ],
)
def test_probe_flaws_are_named(flaw, message):
    with pytest.raises(ConformanceError) as excinfo:
        check_probe(component(), {"flaw": flaw})
    assert str(excinfo.value).startswith("probe 'flawed': ")
    assert message in str(excinfo.value)


def test_options_without_every_are_refused():
    @attrs.frozen
    class Plain:
        #: Nothing.
        flaw: str = ""

    with pytest.raises(ConformanceError, match="its options have an int option 'every' >= 1"):
        check_probe(component(options=Plain))


def test_a_factory_that_builds_something_else_is_named():
    with pytest.raises(ConformanceError, match=r"expected a tel_core\.plugin\.Probe"):
        check_probe(component(factory=lambda options, ctx: object()))


# exec'd code has no source file for the kit to read the `#:` docs from
@pytest.mark.filterwarnings("ignore::tel_core.testing.UndocumentedOptionsWarning")
def test_the_guides_example_probe_passes_the_kit(tel_register, tel_train):
    guide = (ROOT / "docs" / "writing-plugins.md").read_text()
    section = guide[guide.index("### `register_probes`") :]
    code = section[section.index("```python\n") + len("```python\n") :]
    namespace: dict = {}
    exec(compile(code[: code.index("\n```")], "writing-plugins.md", "exec"), namespace)
    plugin = type("GuidePlugin", (), {"register_probes": namespace["register_probes"]})
    tel_register(plugin)
    check_probe("head_norm", {"max": True})
    run = tel_train(steps=2, probes=[{"name": "head_norm", "every": 1}])
    assert [r["step"] for r in run.records if "head/norm" in r] == [1, 2]
