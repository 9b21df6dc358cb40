"""Reporting layer: compare results files side by side and render the HTML report.

:mod:`.runs` reads results files of ``unlearn eval`` and the ``results.json`` of
``unlearn demo`` / ``unlearn run`` into one shape; :mod:`.compare` prints the text table;
:mod:`.plots` draws the charts; :mod:`.build` renders ``templates/report.html.j2``.
"""
