"""ipywidgets experiments: controls wired to pure functions.

`experiment` builds the shared frame: the controls, an optional Run button,
and an `Output` area that shows the callback's figure and text, or its
traceback when it fails (errors are shown, never swallowed). Each notebook's
builder lives in a topic module (`grulm_edu.widgets.losses`, ...) and passes
a pure callback that the unit tests call directly.

Widget state is not stored in a notebook file, so every notebook also shows
a static figure of the default state next to the widget.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping

__all__ = ["experiment"]


def experiment(
    callback: Callable[..., object],
    controls: Mapping[str, object],
    *,
    run_button: bool = False,
    description: str = "",
):
    """Lay out `controls` above an output area that shows ``callback(**values)``.

    Args:
        callback: pure function of the control values; returns a matplotlib
            figure, a string, or a tuple of them.
        controls: name -> ipywidgets control; the name is the callback's
            keyword argument.
        run_button: when True, the callback runs only on a click of "Run"
            (for slow experiments). It does not run when the widget is built,
            because the notebook already shows the default state as a static
            figure. When False, it runs once at build time and again on every
            released change.
        description: a line of text shown above the controls.

    Returns:
        An `ipywidgets.VBox`; its `.output` is the output area and its `.run`
        method runs the callback with the current values.
    """
    import ipywidgets as widgets
    from IPython.display import display

    output = widgets.Output(layout=widgets.Layout(min_height="120px"))

    def run(*_):
        values = {name: control.value for name, control in controls.items()}
        output.clear_output(wait=True)
        with output:
            try:
                result = callback(**values)
            except Exception:  # shown to the learner in the output area
                print(traceback.format_exc())
                return
            for item in result if isinstance(result, tuple) else (result,):
                if isinstance(item, str):
                    print(item)
                else:
                    display(item)

    children = []
    if description:
        children.append(widgets.HTML(f"<b>{description}</b>"))
    children.extend(controls.values())
    if run_button:
        button = widgets.Button(description="Run", button_style="primary", icon="play")
        button.on_click(run)
        children.append(button)
    else:
        for control in controls.values():
            if hasattr(control, "continuous_update"):
                control.continuous_update = False
            control.observe(run, names="value")
    box = widgets.VBox([widgets.VBox(children), output])
    box.output = output
    box.run = run
    if run_button:
        with output:
            print('Set the controls, then press "Run".')
    else:
        run()
    return box
