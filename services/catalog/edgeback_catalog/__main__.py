from edgeback_catalog.main import main

main()
