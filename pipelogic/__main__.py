from pipelogic.cli import main

# The same program name as the console script, for messages and shell completion.
main(prog_name="pipelogic")
