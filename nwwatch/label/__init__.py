"""``nwwatch label``: turn a model's labels into shapes a person corrects, save training data.

``LabelGeometry`` (droplet circle, wire polygon, facet line, painted strokes) and its JSON
(:mod:`nwwatch.label.geometry`), ``rasterize`` (the exact 50 %-coverage label image,
:mod:`nwwatch.label.raster`), ``propose_geometry`` (shapes fitted to a model's labels,
:mod:`nwwatch.label.propose`), ``save_labeled_frame`` (the DATA folder ``nwwatch train``
reads, :mod:`nwwatch.label.store`) and the local web page (:mod:`nwwatch.label.server`,
``static/``). See docs/labelling.md.
"""
