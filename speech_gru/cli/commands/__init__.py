"""One module per ``speech-gru`` command, each with the same two functions:

* ``add_parser(subparsers)``: adds the command, its flags and their help, and sets
  ``func=run``; returns the command's parser.
* ``run(args)``: does the command and returns its exit status; a failure the user can fix
  is raised as ``options.CliError`` (one line, exit 2).

``speech_gru.cli.main`` lists them, in the order ``--help`` shows.
"""
