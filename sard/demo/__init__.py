"""What the Gradio demo (``app.py``) does, without Gradio: demo-only helpers, not part of the inference library.

``import sard`` does not import this package, and nothing in it imports gradio, so all of it is tested without
a browser; ``app.py`` only wires these functions to widgets. Errors are ``ValueError`` with a message that says
what to do; the app shows them in the page.

- :mod:`sard.demo.models`: the models the demo serves (the bundled ones, found in their folder, and one given
  checkpoint), their model cards, and a cache that loads each on first use within a memory bound.
- :mod:`sard.demo.examples`: the page's examples, each with its image, mask, defect type and model.
- :mod:`sard.demo.editor`: the image editor's value (background and painted layers) to and from masks.
- :mod:`sard.demo.inputs`: uploads and options, checked.
- :mod:`sard.demo.display`: the 8-bit copies the browser shows, and outlines.
- :mod:`sard.demo.generate`: one press of Generate: the variations, their display copies and the PNG downloads.
- :mod:`sard.demo.sync`: the page's JavaScript that runs its events in click order, so that Generate never
  reads a half-updated page.

The browser only ever sees 8-bit display copies (at most :data:`~sard.demo.display.MAX_DISPLAY_SIDE` pixels on a
side): the image editor paints on such a copy. The pipeline gets the uploaded file itself, in its own mode and
bit depth, and the painted mask scaled back to the file's size, so the downloaded result equals the upload
outside the mask.
"""
