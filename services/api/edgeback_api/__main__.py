from edgeback_api.main import main

main()
