from pipelogic.cli import main

main()
