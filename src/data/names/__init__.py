"""The class-name files of the training-free benchmark protocol (``cls_<benchmark>.txt``).

Data only: one class per line, several names of one class separated by commas. Read them with
:func:`src.data.classnames.read_names_file`; the source is in ``README.md`` here.
"""
