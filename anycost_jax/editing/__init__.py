"""Interactive editing: latent projection and attribute directions.

Submodules:
  projection  optimise a w+ latent so the generator reconstructs target images
              (LPIPS-VGG + MSE, Adam or L-BFGS, optional encoder init/regulariser and
              random sub-generators per step), and `load_image`.
  directions  attribute directions in W: read the original's boundary files, our .npz,
              the demo's slider map and edit arithmetic (`apply_edits`), a linear-SVM
              `compute_directions` over any classifier, and `color_attributes` for the
              procedural demo model.
  edit        one latent edited along directions, previewed on a sub-generator (launch/edit.py).
  editor      the browser editor: its HTTP-free state and API, the server, `load_editor` / `serve`
              (launch/editor.py).
"""
