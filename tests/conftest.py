import os
import sys

# tests/naive is imported as ``naive`` by the tests.
sys.path.insert(0, os.path.dirname(__file__))
