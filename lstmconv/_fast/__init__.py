"""lstmconv._fast"""
