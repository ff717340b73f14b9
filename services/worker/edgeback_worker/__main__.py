from edgeback_worker.main import main

main()
