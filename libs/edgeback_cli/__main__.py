from edgeback_cli.main import main

main()
