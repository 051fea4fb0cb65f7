"""The page's JavaScript, which keeps a press of Generate from reading a half-updated page.

An example click, an upload or a model switch changes several widgets from one server reply, and the browser
reads Generate's inputs when the press is handled: pressed before that reply landed, Generate read the previous
image, mask or defect type (issue #18); and two such events in flight could land in either order. So these
events and Generate take a ticket when clicked and run in the order of the clicks, one at a time: each event
starts once those clicked before it have landed, and Generate reads its inputs once they have, before any event
clicked after it starts. The last click decides what the page shows, and Generate paints what it showed at the
press. (Once a reply has landed, the editor hands over its value only when it has loaded the new images.)

``app.py`` attaches :func:`begin` to the start of each such event (it runs in the browser before the server
call), :data:`END` as the step after it (``.then`` runs also when the event failed), :data:`WAIT` as the first
step of Generate and :func:`read` to the step that runs the pipeline (it runs once that step's inputs have been
read). The events are registered with ``trigger_mode="multiple"``, so that a click while an earlier one waits
its turn is kept.
"""

from __future__ import annotations

# The page's state, created once: tickets are handed out in the order of the clicks, and ticket t has its turn
# when `done` reaches t.
_STATE = "(window.sardDemo || (window.sardDemo = {tickets: 0, done: 0}))"
# At most this long an event waits for its turn: a turn that never ends (a reply that never lands) is skipped
# then, rather than blocking the page for good; the server checks what it gets.
WAIT_MS = 60_000
_TURN = f"""const state = {_STATE};
  const ticket = state.tickets++;
  const start = Date.now();
  while (state.done < ticket && Date.now() - start < {WAIT_MS}) {{
    await new Promise((resolve) => setTimeout(resolve, 25));
  }}
  state.done = Math.max(state.done, ticket);"""

END = f"() => {{ {_STATE}.done += 1; return []; }}"
WAIT = f"async () => {{ {_TURN} return []; }}"


def begin(inputs: int) -> str:
    """The browser-side start of an event with ``inputs`` inputs: takes a ticket and waits for its turn. It passes
    its inputs (what the visitor clicked) on unchanged; :data:`END` ends the turn."""
    return f"async (...args) => {{ {_TURN} return args.slice(0, {inputs}); }}"


def read(inputs: int) -> str:
    """The browser-side start of Generate's pipeline step, with ``inputs`` inputs just read: ends the turn that
    :data:`WAIT` began, and passes them on unchanged."""
    return f"(...args) => {{ {_STATE}.done += 1; return args.slice(0, {inputs}); }}"
